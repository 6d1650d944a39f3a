//! When a certificate expires: its `notAfter`, read from the DER with the few steps
//! RFC 5280 §4.1 fixes (Certificate -> tbsCertificate -> validity), for the start-up and
//! reload logs, `check` and the `gatehouse_tls_certificate_expiry_timestamp_seconds`
//! gauge. Nothing is trusted from it: rustls has already loaded the pair, and a
//! certificate this cannot read simply has no known expiry.

/// `notAfter` of the DER certificate `der`, in Unix seconds; `None` when it cannot be
/// read.
pub fn not_after(der: &[u8]) -> Option<u64> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, present from v2 on.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for tag in [INTEGER, SEQUENCE, SEQUENCE] {
        rest = expect(rest, tag)?.1;
    }
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (_, _, after) = tlv(validity)?;
    let (tag, time, _) = tlv(after)?;
    match tag {
        UTC_TIME => unix_time(time, 2),
        GENERALIZED_TIME => unix_time(time, 4),
        _ => None,
    }
}

/// `2027-03-01 00:00 UTC (in 84 days)`, or `... (expired 3 days ago)`.
pub fn describe(not_after: u64, now: u64) -> String {
    let (days, secs) = (not_after / 86_400, not_after % 86_400);
    let (y, m, d) = civil_from_days(days);
    let when = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    );
    match not_after.checked_sub(now) {
        Some(left) => format!("{when} (in {} days)", left / 86_400),
        None => format!("{when} (expired {} days ago)", (now - not_after) / 86_400),
    }
}

/// Less than this left: start-up, a reload and `check` warn.
pub const WARN_BEFORE_SECS: u64 = 14 * 86_400;

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The content of the element at the start of `d` when its tag is `tag`, and what
/// follows it.
fn expect(d: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = tlv(d)?;
    (t == tag).then_some((content, rest))
}

/// One DER element at the start of `d`: its tag, its content, and what follows.
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&first, mut d) = d.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = (d.get(..n)?, d.get(n..)?);
        d = rest;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    Some((tag, d.get(..len)?, d.get(len..)?))
}

/// `YYMMDDHHMMSSZ` (`year_digits` 2, RFC 5280: 50-99 is 19xx) or `YYYYMMDDHHMMSSZ` (4)
/// as Unix seconds.
fn unix_time(text: &[u8], year_digits: usize) -> Option<u64> {
    if text.len() != year_digits + 11 || text.last() != Some(&b'Z') {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u64> {
        let s = std::str::from_utf8(text.get(from..from + len)?).ok()?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let mut year = num(0, year_digits)?;
    if year_digits == 2 {
        year += if year >= 50 { 1900 } else { 2000 };
    }
    let at = year_digits;
    let (month, day) = (num(at, 2)?, num(at + 2, 2)?);
    let (h, m, s) = (num(at + 4, 2)?, num(at + 6, 2)?, num(at + 8, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian); `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{date_time_ymd, CertificateParams, KeyPair};

    fn cert_until(y: i32, m: u8, d: u8) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["gatehouse.test".to_string()]).unwrap();
        p.not_after = date_time_ymd(y, m, d);
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_in_both_time_forms() {
        // 2049: UTCTime; 2050 on: GeneralizedTime (RFC 5280 4.1.2.5).
        for (y, m, d, want) in [
            (2049, 12, 31, 2_524_521_600),
            (2050, 1, 1, 2_524_608_000),
            (2027, 3, 1, 1_803_859_200),
            (1999, 12, 31, 946_598_400),
        ] {
            assert_eq!(not_after(&cert_until(y, m, d)), Some(want), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn describes_the_date_and_the_days_left() {
        let at = 1_803_859_200; // 2027-03-01
        assert_eq!(
            describe(at, at - 84 * 86_400 - 5),
            "2027-03-01 00:00 UTC (in 84 days)"
        );
        assert_eq!(
            describe(at + 3_723, at + 3 * 86_400 + 9_000),
            "2027-03-01 01:02 UTC (expired 3 days ago)"
        );
        for days in [0, 59, 10_956, 20_000, 29_220, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn anything_else_has_no_known_expiry() {
        let good = cert_until(2030, 6, 15);
        for bad in [
            &[][..],
            &good[..good.len() / 2],
            &good[..4],
            b"not DER at all",
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x85, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(not_after(bad), None);
        }
        assert_eq!(unix_time(b"491231235960Z", 2), Some(2_524_607_999 + 1));
        for bad in [
            &b"491331000000Z"[..],
            b"4912310000Z",
            b"49123100000aZ",
            b"491231000000+",
        ] {
            assert_eq!(unix_time(bad, 2), None, "{bad:?}");
        }
    }
}
