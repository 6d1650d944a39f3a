//! gatehouse: an identity-aware reverse proxy. It logs users in with OpenID Connect and
//! hands the upstream (Headlamp, or any web app) a verified identity in request headers.
//!
//! The request path: `http` (router, endpoints, errors) -> `auth` (skip routes -> bearer
//! token or session -> refresh -> identity -> `authz` rules -> decision) -> `headers`
//! (sanitise, inject) -> `proxy` (stream, upgrade). The forward-auth endpoint runs the same
//! `auth` step and answers with the decision instead of proxying.

pub mod assertion;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bearer;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devidp;
pub mod gateway;
pub mod headers;
pub mod http;
pub mod identity;
pub mod memory;
pub mod metrics;
pub mod oidc;
pub mod online;
pub mod proxy;
pub mod redirect;
pub mod reload;
pub mod routes;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod util;
pub mod whoami;
