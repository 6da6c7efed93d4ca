//! The throwaway PostgreSQL server of `wasmstate_tests::postgres`: one per
//! process whatever runtime asks, and each database it makes is a new one;
//! and the servers of a test's own, which it stops and starts again.

use std::time::Instant;

use wasmstate_tests::postgres;

/// Two databases of the shared server are distinct: each keeps its own rows.
#[tokio::test]
async fn databases_are_distinct_and_keep_their_rows() -> anyhow::Result<()> {
    let pg = postgres::shared().await?;
    let urls = [pg.create_database().await?, pg.create_database().await?];
    assert_ne!(urls[0], urls[1]);
    let mut clients = Vec::new();
    for (url, label) in urls.iter().zip(["first", "second"]) {
        let client = postgres::connect(url).await?;
        let name: String = client.query_one("SELECT current_database()", &[]).await?.get(0);
        let path = url.rsplit('/').next().unwrap_or_default();
        assert_eq!(path.split('?').next(), Some(name.as_str()), "{url}");
        client.batch_execute("CREATE TABLE t (id int PRIMARY KEY, label text NOT NULL)").await?;
        client.execute("INSERT INTO t VALUES (1, $1)", &[&label]).await?;
        clients.push((client, label));
    }
    for (client, label) in &clients {
        let rows = client.query("SELECT label FROM t", &[]).await?;
        let labels: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        assert_eq!(labels, [*label]);
    }
    assert!(std::ptr::eq(pg, postgres::shared().await?), "one server per process");
    Ok(())
}

/// The server outlives the runtime that started it.
#[test]
fn the_server_outlives_the_runtime_that_started_it() -> anyhow::Result<()> {
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build();
    let pg = runtime()?.block_on(postgres::shared())?;
    runtime()?.block_on(async {
        let client = postgres::connect(&pg.create_database().await?).await?;
        let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
        assert_eq!(one, 1);
        anyhow::Ok(())
    })?;
    Ok(())
}

/// A server of a test's own stops, is killed and starts again on the same
/// port, and keeps what was committed; the shared server is not disturbed,
/// and dropping it, even with no runtime left, removes it.
#[test]
fn an_own_server_stops_crashes_and_starts_again_and_keeps_its_rows() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (pg, data_dir) = runtime.block_on(async {
        let shared = postgres::shared().await?;
        let shared_client = postgres::connect(&shared.create_database().await?).await?;

        let took = Instant::now();
        let pg = postgres::start_own().await?;
        eprintln!("start_own took {:?}", took.elapsed());
        assert_ne!(pg.port(), shared.port());
        let url = pg.create_database().await?;
        assert!(url.contains(&format!(":{}/", pg.port())), "{url}");
        let client = postgres::connect(&url).await?;
        client.batch_execute("CREATE TABLE t (id int PRIMARY KEY, label text NOT NULL)").await?;
        client.execute("INSERT INTO t VALUES (1, 'before the stop')", &[]).await?;

        let took = Instant::now();
        pg.stop().await?;
        eprintln!("stop took {:?}", took.elapsed());
        assert!(client.simple_query("SELECT 1").await.is_err(), "a connection survived the stop");
        assert!(postgres::connect(&url).await.is_err(), "connected to a stopped server");
        assert!(std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_err(), "the port still accepts");
        let error = pg.create_database().await.expect_err("a database made on a stopped server");
        assert!(format!("{error:#}").contains("stopped"), "{error:#}");
        pg.stop().await?;
        shared_client.simple_query("SELECT 1").await?;

        let took = Instant::now();
        pg.start().await?;
        eprintln!("start took {:?}", took.elapsed());
        pg.start().await?;
        let client = postgres::connect(&url).await?;
        assert_eq!(labels(&client).await?, ["before the stop"]);
        client.execute("INSERT INTO t VALUES (2, 'before the crash')", &[]).await?;

        let took = Instant::now();
        pg.kill().await?;
        eprintln!("kill took {:?}", took.elapsed());
        assert!(client.simple_query("SELECT 1").await.is_err(), "a connection survived the crash");
        assert!(postgres::connect(&url).await.is_err(), "connected to a killed server");
        let took = Instant::now();
        pg.start().await?;
        eprintln!("start after the kill took {:?}", took.elapsed());
        let client = postgres::connect(&url).await?;
        assert_eq!(labels(&client).await?, ["before the stop", "before the crash"]);
        let log = std::fs::read_to_string(pg.log_path())?;
        assert!(log.contains("automatic recovery in progress"), "no crash recovery in the log:\n{log}");

        shared_client.simple_query("SELECT 1").await?;
        let data_dir = pg.data_dir().to_path_buf();
        anyhow::Ok((pg, data_dir))
    })?;
    drop(runtime);
    assert!(data_dir.exists());
    let took = Instant::now();
    drop(pg);
    eprintln!("drop took {:?}", took.elapsed());
    assert!(!data_dir.exists(), "{} is left", data_dir.display());
    Ok(())
}

/// The labels of table `t`, by id.
async fn labels(client: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    let rows = client.query("SELECT label FROM t ORDER BY id", &[]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// An own server may be shared with spawned tasks, and so may the futures of
/// its methods (checked when this compiles).
const _: fn(&'static postgres::OwnPostgres) = |pg| {
    fn send<T: Send + 'static>(_: T) {}
    send(pg);
    send(postgres::start_own());
    send(pg.create_database());
    send(pg.stop());
    send(pg.start());
    send(pg.kill());
};
