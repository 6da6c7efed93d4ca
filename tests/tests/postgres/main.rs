//! Black-box tests of what only the PostgreSQL journal has: a database
//! that goes away under a running host, and several hosts on one. Each
//! test runs a PostgreSQL server of its own, whatever journal the rest of
//! the suite runs on.

mod copy;
#[path = "../common/in_process.rs"]
mod in_process;
mod outage;
mod shared_journal;
mod two_hosts;
