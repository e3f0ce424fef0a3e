//! SIP passwords: the ones switchboard makes, and MikoPBX 2026.1's own rule for the ones
//! it takes (`src/Core/System/PasswordService.php`, `validate` in the SIP context with a
//! minimum of 5, and `calculateScore`, at tag 2026.1.223). v3 checks the rule on every
//! save of a record that holds a password, the stored one included (a PATCH merges
//! into the stored record first), so switchboard checks a stored password before it
//! sends a change that MikoPBX would refuse for it.

use rand::{Rng, seq::IndexedRandom};

use crate::backends::Secret;

const PASSWORD_LEN: usize = 20;
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
/// Nothing that means something in `pjsip.conf` (`;`, `#`, `=`, quotes) or in a URL.
const SYMBOLS: &[u8] = b"!%*+-._~";

/// A SIP secret for MikoPBX: v3 wants 5–64 characters that its strength check scores
/// high (length, four character classes, no runs, no repeats, nothing from a dictionary);
/// the legacy API takes anything, so one rule serves both.
pub(super) fn generate() -> Secret {
    let mut rng = rand::rng();
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    loop {
        let mut bytes: Vec<u8> = (0..PASSWORD_LEN).filter_map(|_| all.choose(&mut rng).copied()).collect();
        // One of each class at a random place, so every class is present.
        for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
            let at = rng.random_range(0..PASSWORD_LEN);
            if let (Some(slot), Some(c)) = (bytes.get_mut(at), class.choose(&mut rng)) {
                *slot = *c;
            }
        }
        if strong(&bytes) {
            return Secret::new(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

/// Every class present, no character twice in a row, no run of three consecutive
/// characters (`abc`, `321`): what strength checks count against a password.
pub(super) fn strong(p: &[u8]) -> bool {
    let has = |class: &[u8]| p.iter().any(|c| class.contains(c));
    let classes = [LOWER, UPPER, DIGITS, SYMBOLS].iter().all(|c| has(c));
    let repeats = p.windows(2).any(|w| w[0] == w[1]);
    let runs = p.windows(3).any(|w| {
        let (a, b, c) = (i16::from(w[0]), i16::from(w[1]), i16::from(w[2]));
        (b - a == 1 && c - b == 1) || (a - b == 1 && b - c == 1)
    });
    p.len() == PASSWORD_LEN && classes && !repeats && !runs
}

/// Why MikoPBX 2026.1 would refuse `p` as a SIP password, or `None` when its rule (as far
/// as it can be known here: the dictionary of common passwords is not) takes it.
pub(super) fn refusal(p: &str) -> Option<String> {
    let len = p.len();
    if len < 5 {
        return Some("shorter than 5 characters".into());
    }
    if len > 64 {
        return Some("longer than 64 characters".into());
    }
    if ["admin", "password", "1234", "12345", "secret"].contains(&p.to_lowercase().as_str()) {
        return Some("a default password".into());
    }
    let score = score(p);
    (score < 60).then(|| format!("its strength score is {score}, MikoPBX wants at least 60"))
}

/// `PasswordService::calculateScore`, as written in 2026.1.223.
pub(super) fn score(p: &str) -> u32 {
    let bytes = p.as_bytes();
    let length = bytes.len() as i64;
    if length == 0 {
        return 0;
    }
    let mut score: i64 = match length {
        16.. => 30,
        12..=15 => 20,
        8..=11 => 10,
        n => n,
    };
    let classes = [
        bytes.iter().any(u8::is_ascii_lowercase),
        bytes.iter().any(u8::is_ascii_uppercase),
        bytes.iter().any(u8::is_ascii_digit),
        bytes.iter().any(|b| !b.is_ascii_alphanumeric()),
    ];
    let diversity = classes.iter().filter(|c| **c).count() as i64;
    score += 10 * diversity;
    let unique = bytes.iter().collect::<std::collections::HashSet<_>>().len() as f64;
    score += match unique / length as f64 {
        r if r > 0.7 => 20,
        r if r > 0.5 => 15,
        r if r > 0.3 => 10,
        _ => 5,
    };
    if diversity >= 3 && length >= 12 {
        score += 10;
    }
    let mut penalties = 0;
    if bytes.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
        penalties += 10;
    }
    let lowered = p.to_ascii_lowercase();
    let sequences = [
        "qwerty", "asdfgh", "zxcvbn", "12345", "23456", "34567", "45678", "56789", "abcde", "bcdef", "cdefg",
        "defgh",
    ];
    if sequences.iter().any(|s| lowered.contains(s) || lowered.contains(&s.chars().rev().collect::<String>()))
    {
        penalties += 10;
    }
    if bytes.iter().all(u8::is_ascii_alphabetic) && length < 10 {
        penalties += 15;
    }
    (score - penalties).clamp(0, 100) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_strong_pass_mikopbx_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        for p in [a, b] {
            assert!(strong(p.expose().as_bytes()), "{}", p.expose());
            assert_eq!(refusal(p.expose()), None, "{}", p.expose());
        }
    }

    #[test]
    fn mikopbx_scores_as_its_code_does() {
        // 16+ characters, four classes, all different, mixed: the maximum.
        assert_eq!(score("Vq7#pL2m!xR9zT4w"), 100);
        // The legacy template's secrets (base64 of base64) pass.
        assert!(score("Nk9oOFI2ZXdDMEU9") >= 60);
        assert!(refusal("weakpass").is_some());
        assert!(refusal("1234").is_some());
        assert!(refusal("secret").is_some());
        assert!(refusal("abc12").is_some(), "score {}", score("abc12"));
        assert_eq!(refusal("Secret-301"), None, "score {}", score("Secret-301"));
    }
}
