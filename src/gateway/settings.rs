//! What a `[[routes]]` entry sets for its app besides its upstream and rules: skip
//! routes of its own, its own identity header set (`header_*`, `pass_authorization`) and
//! its own assertion audience and groups. Each left out takes the top-level setting, so
//! a route that sets none of them behaves as the single-upstream configuration does.

use crate::assertion::AssertionPolicy;
use crate::config::{Config, HeaderNames};
use crate::routes::SkipRoute;

/// A route's own settings; `None` (or empty) is the top-level setting.
#[derive(Debug, Clone, Default)]
pub struct RouteSettings {
    /// This app's `skip_auth_routes`, in addition to the top-level ones (which apply on
    /// every host).
    pub skip_auth_routes: Vec<SkipRoute>,
    /// The identity headers this app gets; `None`: the top-level set. Whichever set a
    /// request gets, every name of every set is removed from what the client sent.
    pub headers: Option<HeaderNames>,
    /// `assertion_audience` and `assertion_groups` for this app; `None`: the top-level
    /// ones.
    pub assertion: Option<AssertionPolicy>,
}

/// The settings a request gets: its route's where it has its own, else the top level.
#[derive(Clone, Copy)]
pub struct Applied<'a> {
    pub headers: &'a HeaderNames,
    /// `None`: the assertion is off.
    pub assertion: Option<&'a AssertionPolicy>,
    /// The route's own skip routes (the top-level ones are always asked).
    pub skip_auth_routes: &'a [SkipRoute],
}

impl<'a> Applied<'a> {
    /// The settings for route `index` of `cfg`'s table (`None`: no route, the top level).
    pub fn of(cfg: &'a Config, index: Option<usize>) -> Applied<'a> {
        let own = index
            .and_then(|i| cfg.routes.routes().get(i))
            .map(|r| &r.own);
        let top_policy = cfg.assertion.as_ref().map(|a| &a.policy);
        Applied {
            headers: own.and_then(|o| o.headers.as_ref()).unwrap_or(&cfg.headers),
            assertion: top_policy.map(|top| own.and_then(|o| o.assertion.as_ref()).unwrap_or(top)),
            skip_auth_routes: own.map(|o| o.skip_auth_routes.as_slice()).unwrap_or(&[]),
        }
    }
}
