//! The multi-app gateway: `[[routes]]` send each host (and path prefix) to its own
//! upstream under its own access rules. Without routes gatehouse serves the one
//! `upstream` and nothing here runs.

pub mod table;

pub use table::{HostPattern, Route, RouteTable};
