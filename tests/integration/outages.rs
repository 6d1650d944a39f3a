//! When what gatehouse depends on fails: a provider that hangs, an upstream that closes
//! mid-response or drops a WebSocket. Each answer is bounded in time, names the cause,
//! and leaves no connection or memory behind. (The real provider going down and coming
//! back is in `interop.rs`.)

use crate::flow::{login, world};
use crate::support::upstream::seen;
use crate::support::Browser;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The provider hangs (accepts, never answers): a sign-in in progress and a new one each
/// get a 503 naming the provider within the provider timeout, and a signed-in user keeps
/// working (the refresh that falls due is skipped while the tokens are valid).
#[tokio::test]
async fn a_hung_provider_costs_a_bounded_wait_and_a_503_naming_it() {
    let w = world(&[
        ("provider_timeout_secs", "2"),
        ("refresh_before_secs", "100000"),
    ])
    .await;
    let alice = Browser::new();
    assert_eq!(login(&w, &alice, "/before").await.status, 200);

    // Bob is half-way through signing in when the provider hangs.
    let bob = Browser::new();
    let to_idp = bob
        .get(&format!("{}/oauth2/start?rd=/after", w.gh.url))
        .await;
    let authorize = to_idp.location().expect("sent to the provider");
    let back = bob.get(&authorize).await;
    let callback = back
        .location()
        .expect("the provider sends bob back with a code");
    w.idp.state.hang.store(true, Ordering::SeqCst);

    let started = Instant::now();
    let r = bob.get(&callback).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        took < Duration::from_secs(5),
        "the exchange waited {took:?}"
    );
    assert!(
        r.body.contains(&w.idp.issuer),
        "names the provider: {}",
        r.body
    );
    assert!(r.body.contains("timed out"), "names the cause: {}", r.body);
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);

    // A new sign-in is not sent to a provider that does not answer.
    let carol = Browser::new();
    let started = Instant::now();
    let r = carol.get(&format!("{}/page", w.gh.url)).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.body.contains(&w.idp.issuer), "{}", r.body);

    // Alice is signed in: her requests pass, promptly, with her identity.
    for _ in 0..3 {
        let started = Instant::now();
        let r = alice.get(&format!("{}/during", w.gh.url)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            seen(&r.json(), "x-forwarded-user"),
            vec!["alice@example.test"]
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    // The provider answers again: sign-in works without a restart.
    w.idp.state.hang.store(false, Ordering::SeqCst);
    let dave = Browser::new();
    let mut landed = None;
    for _ in 0..50 {
        let (r, _) = dave.follow(&format!("{}/after", w.gh.url)).await;
        if r.status == 200 {
            landed = Some(r);
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let landed = landed.expect("sign-in works again once the provider answers");
    assert_eq!(landed.json()["path"], "/after");
}
