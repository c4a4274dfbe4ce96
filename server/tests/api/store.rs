//! The storage layer on both backends: migrations, round trips, readiness before migration.

use scopehub::store::{INSTALLATION_ID, Store};

use crate::support::{Backend, TestDb, both};

async fn settings_round_trip(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let store = db.store(true).await;

    assert_eq!(store.get_setting("missing").await.unwrap(), None);
    store
        .put_setting("greeting", "hello, wörld ✓")
        .await
        .unwrap();
    assert_eq!(
        store.get_setting("greeting").await.unwrap().as_deref(),
        Some("hello, wörld ✓")
    );
    store.put_setting("greeting", "replaced").await.unwrap();
    assert_eq!(
        store.get_setting("greeting").await.unwrap().as_deref(),
        Some("replaced")
    );

    assert_eq!(
        store.put_setting_if_absent("first", "a").await.unwrap(),
        "a"
    );
    assert_eq!(
        store.put_setting_if_absent("first", "b").await.unwrap(),
        "a"
    );
    assert_eq!(
        store.get_setting("first").await.unwrap().as_deref(),
        Some("a")
    );
    let rows = db
        .scalar_i64("SELECT COUNT(*) FROM settings WHERE key IN ('greeting', 'first')")
        .await;
    assert_eq!(rows, 2);
}
both!(settings_round_trip);

async fn prepare_is_idempotent_and_keeps_data(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let store = db.store(true).await;
    let id = store
        .get_setting(INSTALLATION_ID)
        .await
        .unwrap()
        .expect("installation id");
    store.put_setting("kept", "yes").await.unwrap();
    store.close().await;

    // A restart: a new store on the same database prepares again without losing anything.
    let again = db.store(true).await;
    again.prepare().await.unwrap();
    assert_eq!(again.get_setting(INSTALLATION_ID).await.unwrap(), Some(id));
    assert_eq!(
        again.get_setting("kept").await.unwrap().as_deref(),
        Some("yes")
    );
}
both!(prepare_is_idempotent_and_keeps_data);

async fn concurrent_prepares_agree_on_one_installation_id(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stores: Vec<Store> = (0..4).map(|_| Store::open(&db.url).unwrap()).collect();
    let results = futures_util::future::join_all(stores.iter().map(|s| s.prepare())).await;
    // Racing migrators may see each other's lock or table; every store must end up prepared.
    for (store, result) in stores.iter().zip(results) {
        if result.is_err() {
            store
                .prepare()
                .await
                .expect("prepare after a racing migrator");
        }
    }
    let mut ids = Vec::new();
    for store in &stores {
        ids.push(store.get_setting(INSTALLATION_ID).await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}
both!(concurrent_prepares_agree_on_one_installation_id);

async fn queries_before_migration_are_unavailable_not_internal(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let store = db.store(false).await;
    let error = store.get_setting(INSTALLATION_ID).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
}
both!(queries_before_migration_are_unavailable_not_internal);

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let url = "postgres://postgres@127.0.0.1:1/none".parse().unwrap();
    let store = Store::open(&url).unwrap();
    let error = store.prepare().await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(store.ping().await.unwrap_err().is_unavailable());
}

/// Two users replicas deliver from one outbox: a due message is claimed by exactly one of them,
/// and becomes due again if the claimant never marks it (it died) once the lease is over.
async fn a_due_message_is_claimed_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let store = db.store(true).await;
    let mail = scopehub::store::NewMail {
        to: "someone@example.com".into(),
        subject: "hello".into(),
        body: "hi".into(),
    };
    let mut tx = store.begin().await.unwrap();
    tx.enqueue_mail("m1", &mail, "pending", 1_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let due = store.due_mail(2_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let (first, second) = tokio::join!(
        store.claim_mail("m1", 2_000, 10_000),
        store.claim_mail("m1", 2_000, 10_000)
    );
    assert_eq!(
        [first.unwrap(), second.unwrap()]
            .iter()
            .filter(|c| **c)
            .count(),
        1,
        "exactly one claim wins"
    );
    assert!(store.due_mail(9_999, 10).await.unwrap().is_empty());
    assert!(!store.claim_mail("m1", 9_999, 20_000).await.unwrap());
    assert!(store.claim_mail("m1", 10_000, 20_000).await.unwrap());
    store.mark_mail_sent("m1", "sent", 10_500).await.unwrap();
    assert!(!store.claim_mail("m1", 30_000, 40_000).await.unwrap());
}
both!(a_due_message_is_claimed_once);
