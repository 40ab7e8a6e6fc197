//! When to renew and when to re-verify a token (DESIGN §6.2, §6.4). Pure: time is a parameter
//! and spreading comes from a caller-provided seed (e.g. a hash of the `GitLabToken` uid).
//!
//! A GitLab token dies at 00:00 UTC on its `expires_at` date. Renewal is planned on the UTC day
//! `expires_at − renewBefore`, at a seed-chosen instant between 01:00 and 23:00 (away from
//! midnight, when GitLab runs its expiry jobs), and never later than 24 h before death.

use chrono::{DateTime, Days as ChronoDays, NaiveDate, NaiveTime, TimeDelta, Utc};

use crate::crd::Days;

/// GitLab's default maximum token lifetime in days (400 only behind a feature flag).
pub const GITLAB_MAX_LIFETIME_DAYS: u32 = 365;

/// How often GitLab is asked whether a token is still active, on average.
pub const VERIFY_INTERVAL: TimeDelta = TimeDelta::hours(6);

/// The shortest gap between two verifications of one token.
pub const MIN_VERIFY_GAP: TimeDelta = TimeDelta::minutes(90);

/// Start of the jitter window within the renewal day.
const WINDOW_START: TimeDelta = TimeDelta::hours(1);
/// Length of the jitter window (01:00 to 23:00 UTC).
const WINDOW_LEN_SECS: u64 = 22 * 3600;

/// A well-mixed 64-bit value from a seed (SplitMix64 finaliser), so nearby seeds spread apart.
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable seed from a string such as an object uid (FNV-1a; not for security).
pub fn seed_from(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

/// The instant a token with this expiry date stops working (00:00 UTC on that date).
pub fn death(expires_at: NaiveDate) -> DateTime<Utc> {
    midnight(expires_at)
}

/// When to renew a token created at `created_at` that expires on `expires_at`.
///
/// Target day = death − `renew_before` days; the instant within it is chosen by `jitter_seed`
/// between 01:00 and 23:00 UTC. If that is later than death − 24 h it moves one day earlier.
/// If the target day lies entirely before `created_at` (renew-before ≥ lifetime), or death − 24 h
/// is already past at creation, the answer is `created_at`: renew now. If only the jittered instant
/// falls before `created_at`, it is spread over what is left until death − 24 h instead.
pub fn renewal_time(
    created_at: DateTime<Utc>,
    expires_at: NaiveDate,
    renew_before: Days,
    jitter_seed: u64,
) -> DateTime<Utc> {
    let death = death(expires_at);
    let latest = death - TimeDelta::hours(24);
    if latest <= created_at {
        return created_at;
    }
    let Some(target_day) = expires_at.checked_sub_days(ChronoDays::new(u64::from(renew_before.get()))) else {
        return created_at;
    };
    if target_day < created_at.date_naive() {
        return created_at;
    }
    let r = mix(jitter_seed);
    let offset = TimeDelta::seconds(i64::try_from(r % WINDOW_LEN_SECS).unwrap_or(0));
    let mut t = midnight(target_day) + WINDOW_START + offset;
    if t > latest {
        t -= TimeDelta::hours(24);
    }
    if t < created_at {
        // Spread over (created_at, latest] by the same seed, so short lifetimes do not renew at once.
        let span = (latest - created_at).num_seconds().max(1);
        let frac = i64::try_from((r >> 16) % (span as u64).max(1)).unwrap_or(0);
        t = created_at + TimeDelta::seconds(frac.max(1).min(span));
    }
    t
}

/// The `expires_at` date to send to GitLab for a token created now: today (UTC) + lifetime,
/// capped at GitLab's maximum of 365 days.
pub fn expires_at_for(now: DateTime<Utc>, lifetime: Days) -> NaiveDate {
    expires_at_for_with_max(now, lifetime, GITLAB_MAX_LIFETIME_DAYS)
}

/// Like [`expires_at_for`] with an explicit maximum (an instance may set a lower limit).
pub fn expires_at_for_with_max(now: DateTime<Utc>, lifetime: Days, max_days: u32) -> NaiveDate {
    let days = lifetime.get().min(max_days.max(1));
    let today = now.date_naive();
    today
        .checked_add_days(ChronoDays::new(u64::from(days)))
        .unwrap_or(today)
}

/// When to next ask GitLab whether the token is still active.
///
/// Each token has its own slot in every [`VERIFY_INTERVAL`] (chosen by `jitter_seed`), so checks
/// of thousands of tokens spread evenly; the next slot is at least [`MIN_VERIFY_GAP`] after the
/// last check (or after `now` if never checked).
pub fn next_verification_time(
    last_verified: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    jitter_seed: u64,
) -> DateTime<Utc> {
    next_verification_time_every(last_verified, now, jitter_seed, VERIFY_INTERVAL)
}

/// [`next_verification_time`] with a configured period (`--verify-interval`); the minimum gap
/// between two checks shrinks with short periods to a quarter of the period.
pub fn next_verification_time_every(
    last_verified: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    jitter_seed: u64,
    period: TimeDelta,
) -> DateTime<Utc> {
    let period_secs = period.num_seconds().max(60);
    let gap = MIN_VERIFY_GAP.min(TimeDelta::seconds(period_secs / 4));
    let slot = i64::try_from(mix(jitter_seed ^ 0x5645_5249_4659) % period_secs as u64).unwrap_or(0);
    let earliest = last_verified.unwrap_or(now) + gap;
    let e = earliest.timestamp();
    let base = e - e.rem_euclid(period_secs) + slot;
    let next = if base >= e { base } else { base + period_secs };
    DateTime::from_timestamp(next, 0).unwrap_or(earliest)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }
    fn date(y: i32, mo: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap()
    }
    fn days(n: u32) -> Days {
        Days::new(n).unwrap()
    }

    #[test]
    fn renewal_lands_in_the_target_day_window_for_every_seed() {
        // (created, expires, renew_before, expected target day)
        let table = [
            (at(2026, 1, 1, 10, 0), date(2026, 1, 31), 10, date(2026, 1, 21)),
            (at(2026, 2, 10, 0, 5), date(2026, 3, 12), 10, date(2026, 3, 2)), // across February
            (at(2028, 2, 1, 0, 0), date(2028, 3, 2), 2, date(2028, 2, 29)),   // leap day
            (at(2026, 12, 1, 12, 0), date(2027, 1, 5), 10, date(2026, 12, 26)), // year boundary
            (at(2026, 1, 1, 0, 0), date(2027, 1, 1), 122, date(2026, 9, 1)),
            (at(2026, 5, 1, 8, 0), date(2026, 5, 31), 2, date(2026, 5, 29)),
        ];
        for (created, expires, rb, day) in table {
            for seed in 0..200u64 {
                let t = renewal_time(created, expires, days(rb), seed);
                assert_eq!(t.date_naive(), day, "{created} {expires} rb={rb} seed={seed}");
                assert!((1..23).contains(&t.hour()), "{t} outside 01:00-23:00");
                assert!(t <= death(expires) - TimeDelta::hours(24));
                assert!(t >= created);
            }
        }
    }

    #[test]
    fn seeds_spread_renewals_over_the_day() {
        let mut hours = std::collections::BTreeSet::new();
        for seed in 0..500u64 {
            hours.insert(renewal_time(at(2026, 1, 1, 0, 0), date(2026, 2, 1), days(10), seed).hour());
        }
        assert_eq!(hours.len(), 22, "hours used: {hours:?}");
        let a = renewal_time(
            at(2026, 1, 1, 0, 0),
            date(2026, 2, 1),
            days(10),
            seed_from("uid-a"),
        );
        let b = renewal_time(
            at(2026, 1, 1, 0, 0),
            date(2026, 2, 1),
            days(10),
            seed_from("uid-a"),
        );
        assert_eq!(a, b, "same seed, same answer");
    }

    #[test]
    fn one_day_renew_before_moves_to_the_day_before_to_stay_24h_ahead() {
        let expires = date(2026, 3, 1);
        for seed in 0..200u64 {
            let t = renewal_time(at(2026, 1, 30, 9, 0), expires, days(1), seed);
            assert_eq!(t.date_naive(), date(2026, 2, 27), "seed {seed}: {t}");
            assert!(t <= at(2026, 2, 28, 0, 0));
        }
    }

    #[test]
    fn edge_cases_table() {
        let created = at(2026, 6, 10, 14, 30);
        // renew-before == lifetime: the target day is today; renew later today or soon after.
        let t = renewal_time(created, date(2026, 7, 10), days(30), 7);
        assert!(t >= created && t <= at(2026, 7, 9, 0, 0), "{t}");
        // renew-before > lifetime: the window is past, renew now.
        assert_eq!(renewal_time(created, date(2026, 7, 10), days(45), 7), created);
        // 1-day lifetime: death - 24h is before creation, renew now.
        assert_eq!(renewal_time(created, date(2026, 6, 11), days(1), 7), created);
        // Already expired token: renew now.
        assert_eq!(renewal_time(created, date(2026, 6, 1), days(3), 7), created);
        // 2-day lifetime, renew 1 day before: somewhere between creation and death - 24h, never at creation.
        for seed in 0..200 {
            let t = renewal_time(created, date(2026, 6, 12), days(1), seed);
            assert!(t > created && t <= at(2026, 6, 11, 0, 0), "seed {seed}: {t}");
        }
        // Target day is the creation day but the jittered hour is earlier: spread over the rest.
        for seed in 0..200 {
            let t = renewal_time(at(2026, 6, 10, 22, 0), date(2026, 6, 20), days(10), seed);
            assert!(
                t > at(2026, 6, 10, 22, 0) && t <= at(2026, 6, 19, 0, 0),
                "seed {seed}: {t}"
            );
        }
        // Renew-before of the maximum Days value far before creation: now.
        assert_eq!(renewal_time(created, date(2026, 7, 10), days(400), 1), created);
    }

    #[test]
    fn expiry_dates_table() {
        let table = [
            (at(2026, 1, 31, 23, 59), 1, date(2026, 2, 1)),
            (at(2026, 1, 31, 0, 0), 30, date(2026, 3, 2)),
            (at(2028, 2, 28, 12, 0), 1, date(2028, 2, 29)),
            (at(2026, 12, 31, 23, 0), 1, date(2027, 1, 1)),
            (at(2026, 1, 1, 0, 0), 365, date(2027, 1, 1)),
            (at(2026, 1, 1, 0, 0), 400, date(2027, 1, 1)), // capped at 365
        ];
        for (now, lifetime, want) in table {
            assert_eq!(expires_at_for(now, days(lifetime)), want, "{now} + {lifetime}d");
        }
        assert_eq!(
            expires_at_for_with_max(at(2026, 1, 1, 0, 0), days(90), 30),
            date(2026, 1, 31)
        );
        assert_eq!(
            expires_at_for_with_max(at(2026, 1, 1, 0, 0), days(400), 400),
            date(2027, 2, 5)
        );
    }

    #[test]
    fn verification_is_spread_and_never_too_soon() {
        let now = at(2026, 4, 1, 12, 0);
        let mut slots = std::collections::BTreeSet::new();
        for seed in 0..300u64 {
            for last in [None, Some(now - TimeDelta::hours(5)), Some(now)] {
                let next = next_verification_time(last, now, seed);
                let base = last.unwrap_or(now);
                assert!(
                    next >= base + MIN_VERIFY_GAP,
                    "seed {seed}: {next} too soon after {base}"
                );
                assert!(
                    next < base + MIN_VERIFY_GAP + VERIFY_INTERVAL,
                    "seed {seed}: {next} too late"
                );
            }
            slots.insert(next_verification_time(Some(now), now, seed).hour());
        }
        assert!(slots.len() >= 6, "checks cluster in hours {slots:?}");
        // Stable per token: consecutive checks are one interval apart.
        let first = next_verification_time(Some(now), now, 42);
        let second = next_verification_time(Some(first), first, 42);
        assert_eq!(second - first, VERIFY_INTERVAL);
    }
}
