//! String `format`s that apiextensions-apiserver checks (its kube-openapi strfmt registry):
//! `date-time`/`datetime`, `date`, `byte`, `uuid`/`uuid3`/`uuid4`/`uuid5`, `ipv4`, `ipv6`,
//! `cidr`, `hostname`, `email`, `mac`, `hexcolor`. Other formats (`int32`, `password`, `uri`, …)
//! are accepted unchecked, as the real server does for strings it does not know.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;

/// True when `text` satisfies `format` (unknown formats always do).
pub(super) fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD.decode(text).is_ok(),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => is_uuid(text),
        "ipv4" => text.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(text),
        "hostname" => is_hostname(text),
        "email" => is_email(text),
        "mac" => is_mac(text),
        "hexcolor" => is_hexcolor(text),
        _ => true,
    }
}

fn is_uuid(text: &str) -> bool {
    if !text.is_ascii() {
        return false;
    }
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let dashes_ok =
        text.len() == 32 || (text.len() == 36 && [8, 13, 18, 23].iter().all(|&i| &text[i..=i] == "-"));
    text.is_ascii() && dashes_ok && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_cidr(text: &str) -> bool {
    let Some((ip, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    (ip.parse::<Ipv4Addr>().is_ok() && prefix <= 32) || (ip.parse::<Ipv6Addr>().is_ok() && prefix <= 128)
}

fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_email(text: &str) -> bool {
    match text.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn is_mac(text: &str) -> bool {
    let groups: Vec<&str> = text.split([':', '-']).collect();
    matches!(groups.len(), 6 | 8 | 20)
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_hexcolor(text: &str) -> bool {
    let hex = text.strip_prefix('#').unwrap_or(text);
    matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::format_ok;

    #[test]
    fn format_table() {
        let cases = [
            ("date-time", "2025-01-01T00:00:00Z", true),
            ("date-time", "2025-01-01T00:00:00.123456+02:00", true),
            ("date-time", "2025-01-01", false),
            ("date-time", "yesterday", false),
            ("date", "2025-02-28", true),
            ("date", "2025-02-30", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64!", false),
            ("uuid", "6f1c2d3e-0000-4000-8000-000000000001", true),
            ("uuid", "6f1c2d3e00004000800000000000000Z", false),
            ("uuid", "ééééééééééééééééé-aa", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0.256", false),
            ("ipv6", "::1", true),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("hostname", "gitlab.example.com", true),
            ("hostname", "-bad.example.com", false),
            ("email", "a@b.c", true),
            ("email", "nope", false),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00:1a:2b", false),
            ("hexcolor", "#fff", true),
            ("int32", "anything", true),
            ("password", "x", true),
        ];
        for (format, text, want) in cases {
            assert_eq!(format_ok(format, text), want, "{format} {text}");
        }
    }
}
