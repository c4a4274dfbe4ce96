//! The app's only HTTP client. Every call returns `Result<T, ApiError>`: server errors arrive in the
//! API's own error shape; network failures and undecodable answers are turned into the same shape so
//! pages render one kind of error.

use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use shared::{ApiError, ClientErrorReport, ErrorCode, VersionInfo};

pub async fn version() -> Result<VersionInfo, ApiError> {
    get_json("/api/version").await
}

/// Best effort: sends an error report to the server log, never fails or panics itself.
pub fn report_client_error(message: &str) {
    let url = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default();
    let report = ClientErrorReport::trimmed(message, &url);
    wasm_bindgen_futures_spawn(async move {
        if let Ok(request) = Request::post("/api/client-errors").json(&report) {
            let _ = request.send().await;
        }
    });
}

fn wasm_bindgen_futures_spawn(fut: impl std::future::Future<Output = ()> + 'static) {
    leptos::task::spawn_local(fut);
}

async fn get_json<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    let response = Request::get(path)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("Cannot reach the server: {e}"),
            )
        })?;
    decode(response).await
}

async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    if response.ok() {
        return response.json::<T>().await.map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("The server's answer could not be read: {e}"),
            )
        });
    }
    let status = response.status();
    match response.json::<ApiError>().await {
        Ok(error) => Err(error),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unknown,
            format!("The server answered {status} {}", response.status_text()),
        )),
    }
}
