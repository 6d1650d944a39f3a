//! The one integration-test binary (each file under tests/ would link its own: minutes on
//! two cores). Tiers 2 and 3 of ARCHITECTURE: in-process flows against a test IdP that
//! signs whatever a test asks for, and interop against real programs.

// Test code: a failed unwrap is a failed test with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assertion;
mod audit;
mod backchannel;
mod bypass;
mod cli;
mod flow;
mod forward_auth;
mod gateway_forward_auth;
mod gateway_route_settings;
mod gateway_routes;
mod header_limit;
mod headers;
mod ingress;
mod interop;
mod limits;
mod matching;
mod metrics;
mod mismatch;
mod outages;
mod presets;
mod providers;
mod proxy;
mod real_upstreams;
mod redis_harness;
mod redis_topologies;
mod reload;
mod reload_headers;
mod review;
mod review16;
mod review2;
mod review3;
mod sessions_redis;
mod support;
mod tls;
mod tokens;
mod trace_context;
mod upstream_tls;
mod upstream_tls_ws;
mod upstream_wire;
