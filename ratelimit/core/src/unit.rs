//! Time units of a limit and the fixed windows they define.

use std::fmt;

/// The unit of `requests_per_unit`. Windows are aligned to multiples of the
/// unit's length since the Unix epoch, as envoyproxy/ratelimit aligns them
/// (so a `day` window starts at 00:00 UTC; `month` is 30 days, `year` 365).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// 1 s.
    Second,
    /// 60 s.
    Minute,
    /// 3 600 s.
    Hour,
    /// 86 400 s.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    Month,
    /// 365 days.
    Year,
}

impl Unit {
    /// Parses a unit name, case-insensitively (`second`, `MINUTE`, ...).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        const UNITS: [(&str, Unit); 7] = [
            ("second", Unit::Second),
            ("minute", Unit::Minute),
            ("hour", Unit::Hour),
            ("day", Unit::Day),
            ("week", Unit::Week),
            ("month", Unit::Month),
            ("year", Unit::Year),
        ];
        UNITS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, u)| *u)
    }

    /// Length of one window in seconds.
    #[must_use]
    pub const fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
            Self::Week => 7 * 86_400,
            Self::Month => 30 * 86_400,
            Self::Year => 365 * 86_400,
        }
    }

    /// Start (Unix seconds) of the window holding `now` (Unix seconds).
    #[must_use]
    pub const fn window_start(self, now: u64) -> u64 {
        now - now % self.seconds()
    }

    /// Whole seconds until the window holding `now` ends (1 ..= unit length).
    #[must_use]
    pub const fn seconds_until_reset(self, now: u64) -> u64 {
        self.seconds() - now % self.seconds()
    }

    /// The number Envoy's `RateLimitResponse.RateLimit.Unit` uses for this unit.
    #[must_use]
    pub const fn proto_number(self) -> i32 {
        match self {
            Self::Second => 1,
            Self::Minute => 2,
            Self::Hour => 3,
            Self::Day => 4,
            Self::Month => 5,
            Self::Year => 6,
            Self::Week => 7,
        }
    }

    /// The unit for Envoy's enum number, `None` for `UNKNOWN` (0) or out of range.
    #[must_use]
    pub const fn from_proto_number(n: i32) -> Option<Self> {
        match n {
            1 => Some(Self::Second),
            2 => Some(Self::Minute),
            3 => Some(Self::Hour),
            4 => Some(Self::Day),
            5 => Some(Self::Month),
            6 => Some(Self::Year),
            7 => Some(Self::Week),
            _ => None,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Second => "SECOND",
            Self::Minute => "MINUTE",
            Self::Hour => "HOUR",
            Self::Day => "DAY",
            Self::Week => "WEEK",
            Self::Month => "MONTH",
            Self::Year => "YEAR",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_case_insensitively() {
        assert_eq!(Unit::parse("Minute"), Some(Unit::Minute));
        assert_eq!(Unit::parse("HOUR"), Some(Unit::Hour));
        assert_eq!(Unit::parse("fortnight"), None);
    }

    #[test]
    fn windows_align_to_the_unit() {
        assert_eq!(Unit::Minute.window_start(125), 120);
        assert_eq!(Unit::Minute.seconds_until_reset(125), 55);
        assert_eq!(Unit::Minute.seconds_until_reset(120), 60);
        assert_eq!(Unit::Day.window_start(86_400 * 3 + 5), 86_400 * 3);
    }

    #[test]
    fn proto_numbers_round_trip() {
        for unit in [
            Unit::Second,
            Unit::Minute,
            Unit::Hour,
            Unit::Day,
            Unit::Week,
            Unit::Month,
            Unit::Year,
        ] {
            assert_eq!(Unit::from_proto_number(unit.proto_number()), Some(unit));
        }
        assert_eq!(Unit::from_proto_number(0), None);
    }
}
