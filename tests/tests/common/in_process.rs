//! A host opened in the test's own process (on an injected storage
//! backend, or on a journal other hosts in the process share), served on a
//! free loopback port. Shared by the test binaries that need one.

use wasmstate_tests::Api;

/// Serves `state` on a free loopback port until the test process ends, and
/// answers a client of it. `stop` lives as long as the server: when it goes,
/// the host's live event streams end.
pub async fn serve(state: wasmstate::AppState, stop: tokio::sync::watch::Sender<bool>) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _stop = stop;
        axum::serve(listener, wasmstate::app(state)).await
    });
    Api::new(&base)
}
