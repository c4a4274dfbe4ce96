//! A terminal or log stream opened from a node's controls (exec, attach, logs): xterm.js (from
//! npm, loaded by map.html as the global `Terminal`, with `FitAddon`) drawing what comes over the
//! pipe's websocket (`/api/app/{instance}/api/pipe/{id}`), and what the user types going back.
//! The terminal fits its panel; a terminal that can be resized tells the probe its size through
//! the resize control the pipe named. When the pipe closes, the panel says so and stays readable.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// xterm.js's `Terminal`.
    #[wasm_bindgen(js_name = Terminal)]
    type XTerm;
    #[wasm_bindgen(constructor, js_class = "Terminal")]
    fn new(options: &JsValue) -> XTerm;
    #[wasm_bindgen(method)]
    fn open(this: &XTerm, parent: &web_sys::HtmlElement);
    #[wasm_bindgen(method, js_name = write)]
    fn write_bytes(this: &XTerm, data: &js_sys::Uint8Array);
    #[wasm_bindgen(method, js_name = write)]
    fn write_text(this: &XTerm, data: &str);
    #[wasm_bindgen(method, js_name = onData)]
    fn on_data(this: &XTerm, listener: &Closure<dyn FnMut(String)>);
    #[wasm_bindgen(method, js_name = onResize)]
    fn on_resize(this: &XTerm, listener: &Closure<dyn FnMut(JsValue)>);
    #[wasm_bindgen(method, js_name = loadAddon)]
    fn load_addon(this: &XTerm, addon: &FitAddon);
    #[wasm_bindgen(method)]
    fn focus(this: &XTerm);
    #[wasm_bindgen(method)]
    fn dispose(this: &XTerm);
    #[wasm_bindgen(method, getter)]
    fn cols(this: &XTerm) -> u32;
    #[wasm_bindgen(method, getter)]
    fn rows(this: &XTerm) -> u32;
}

#[wasm_bindgen]
extern "C" {
    /// An `@xterm/addon-fit` `FitAddon`: sizes the terminal to its element.
    type FitAddon;
    #[wasm_bindgen(method)]
    fn fit(this: &FitAddon);
}

impl FitAddon {
    /// `new FitAddon.FitAddon()`: the addon's script defines its class under a global of the same
    /// name.
    fn create() -> Option<FitAddon> {
        let global = js_sys::global();
        let module = js_sys::Reflect::get(&global, &"FitAddon".into()).ok()?;
        let class = js_sys::Reflect::get(&module, &"FitAddon".into()).ok()?;
        let class: &js_sys::Function = class.dyn_ref()?;
        let made = js_sys::Reflect::construct(class, &js_sys::Array::new()).ok()?;
        Some(made.unchecked_into())
    }
}

/// How long a terminal's new size must hold before the probe is told it.
const RESIZE_SETTLES_MS: u64 = 250;

/// A pipe a control opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenPipe {
    pub id: String,
    /// What opened it ("Exec shell", "Logs"…) and on which node, for the panel's title.
    pub title: String,
    /// A terminal (raw bytes, keys sent as typed) rather than lines of output.
    pub raw_tty: bool,
    /// The control that resizes its terminal, with the probe and node it goes to.
    pub resize: Option<(String, String, String)>,
    /// Whether what is typed goes anywhere (not for logs).
    pub input: bool,
}

/// Everything that must live as long as the panel: the terminal, its socket and their callbacks.
struct Live {
    term: XTerm,
    socket: Option<web_sys::WebSocket>,
    /// Refits the terminal when the window is resized (removed with the panel).
    refit: Closure<dyn FnMut()>,
    _callbacks: Vec<Box<dyn std::any::Any>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window
                .remove_event_listener_with_callback("resize", self.refit.as_ref().unchecked_ref());
        }
        if let Some(socket) = &self.socket {
            socket.set_onmessage(None);
            socket.set_onclose(None);
            let _ = socket.close();
        }
        self.term.dispose();
    }
}

fn pipe_url(instance: &str, pipe: &str) -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = match location.protocol().ok().as_deref() {
        Some("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().ok()?;
    Some(format!(
        "{scheme}://{host}/api/app/{}/api/pipe/{}",
        crate::api::js_sys_encode(instance),
        crate::api::js_sys_encode(pipe)
    ))
}

#[component]
pub fn TerminalPanel(
    #[prop(into)] instance: Signal<String>,
    pipe: OpenPipe,
    on_close: Callback<()>,
) -> impl IntoView {
    let host = NodeRef::<leptos::html::Div>::new();
    let closed = RwSignal::new(false);
    let live = StoredValue::new_local(None::<Live>);
    let title = pipe.title.clone();
    let pipe_id = pipe.id.clone();
    Effect::new(move |_| {
        let Some(element) = host.get() else {
            return;
        };
        if live.with_value(Option::is_some) {
            return;
        }
        let options = js_sys::Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = js_sys::Reflect::set(&options, &k.into(), &v);
        };
        set("cursorBlink", pipe.input.into());
        set("convertEol", (!pipe.raw_tty).into());
        set("disableStdin", (!pipe.input).into());
        set("scrollback", 5000.into());
        set("fontSize", 13.into());
        let term = XTerm::new(&options);
        let fit = FitAddon::create();
        if let Some(fit) = &fit {
            term.load_addon(fit);
        }
        term.open(&element);
        if let Some(fit) = &fit {
            fit.fit();
        }
        let mut callbacks: Vec<Box<dyn std::any::Any>> = Vec::new();
        let instance = instance.get_untracked();
        let socket =
            pipe_url(&instance, &pipe.id).and_then(|url| web_sys::WebSocket::new(&url).ok());
        if let Some(socket) = &socket {
            socket.set_binary_type(web_sys::BinaryType::Arraybuffer);
            let writer: XTerm = term.clone().unchecked_into();
            let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                move |event: web_sys::MessageEvent| {
                    let data = event.data();
                    if let Some(text) = data.as_string() {
                        writer.write_text(&text);
                    } else {
                        writer.write_bytes(&js_sys::Uint8Array::new(&data));
                    }
                },
            );
            socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            callbacks.push(Box::new(on_message));
            let writer: XTerm = term.clone().unchecked_into();
            let on_close = Closure::<dyn FnMut(web_sys::CloseEvent)>::new(move |_| {
                writer.write_text("\r\n\x1b[2m[connection closed]\x1b[0m\r\n");
                closed.set(true);
            });
            socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
            callbacks.push(Box::new(on_close));
            if pipe.input {
                let sender = socket.clone();
                let on_data = Closure::<dyn FnMut(String)>::new(move |typed: String| {
                    if sender.ready_state() == web_sys::WebSocket::OPEN {
                        let _ = sender.send_with_u8_array(typed.as_bytes());
                    }
                });
                term.on_data(&on_data);
                callbacks.push(Box::new(on_data));
            }
        } else {
            term.write_text("The terminal's connection could not be opened.\r\n");
            closed.set(true);
        }
        if let Some((probe, node, control)) = pipe.resize.clone() {
            let pipe_id = pipe.id.clone();
            let instance = instance.clone();
            let tell = move |rows: u32, cols: u32| {
                let (instance, probe, node, control, pipe_id) = (
                    instance.clone(),
                    probe.clone(),
                    node.clone(),
                    control.clone(),
                    pipe_id.clone(),
                );
                leptos::task::spawn_local(async move {
                    let args = serde_json::json!({
                        "pipeID": pipe_id, "height": rows.to_string(), "width": cols.to_string(),
                    });
                    let _ =
                        crate::api::control_with(&instance, &probe, &node, &control, &args).await;
                });
            };
            // A window dragged to a new size resizes the terminal many times a second: the probe
            // is told the size it settles at, once it has held for a moment, not every step (each
            // is a control, audited and counted in the user's allowance of controls).
            let on_resize = {
                let tell = tell.clone();
                let pending: std::rc::Rc<std::cell::Cell<Option<TimeoutHandle>>> =
                    Default::default();
                Closure::<dyn FnMut(JsValue)>::new(move |size: JsValue| {
                    let get = |k: &str| {
                        js_sys::Reflect::get(&size, &k.into())
                            .ok()
                            .and_then(|v| v.as_f64())
                            .unwrap_or(0.0) as u32
                    };
                    let (rows, cols) = (get("rows"), get("cols"));
                    if let Some(earlier) = pending.take() {
                        earlier.clear();
                    }
                    let tell = tell.clone();
                    pending.set(
                        set_timeout_with_handle(
                            move || tell(rows, cols),
                            std::time::Duration::from_millis(RESIZE_SETTLES_MS),
                        )
                        .ok(),
                    );
                })
            };
            term.on_resize(&on_resize);
            callbacks.push(Box::new(on_resize));
            // The size it has now, once the shell is there to hear it.
            tell(term.rows(), term.cols());
        }
        // Refit when the window changes size.
        let refit = Closure::<dyn FnMut()>::new(move || {
            if let Some(fit) = &fit {
                fit.fit();
            }
        });
        if let Some(window) = web_sys::window() {
            let _ =
                window.add_event_listener_with_callback("resize", refit.as_ref().unchecked_ref());
        }
        term.focus();
        live.set_value(Some(Live {
            term,
            socket,
            refit,
            _callbacks: callbacks,
        }));
    });
    on_cleanup(move || {
        live.update_value(|l| {
            l.take();
        });
    });
    let close = move |_| {
        live.update_value(|l| {
            l.take();
        });
        let (instance, pipe_id) = (instance.get_untracked(), pipe_id.clone());
        leptos::task::spawn_local(async move {
            let _ = crate::api::close_pipe(&instance, &pipe_id).await;
        });
        on_close.run(());
    };
    view! {
        <section class="terminal-panel" id="terminal" aria-label="Terminal">
            <header>
                <strong id="terminal-title">{title}</strong>
                {move || closed.get().then(|| view! { <span class="badge" id="terminal-closed">"connection closed"</span> })}
                <button type="button" class="secondary" id="terminal-close" title="Close" on:click=close>"×"</button>
            </header>
            <div class="terminal-screen" node_ref=host></div>
        </section>
    }
}
