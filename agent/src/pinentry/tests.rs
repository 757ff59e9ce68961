//! The Assuan client against scripted pinentry conversations.

use super::*;

#[test]
fn escaping_round_trips() {
    let text = "100% sure\r\nsecond line – ünïcode";
    let escaped = escape(text);
    assert_eq!(escaped, "100%25 sure%0D%0Asecond line – ünïcode");
    let mut out = Vec::new();
    unescape_into(escaped.as_bytes(), &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), text);
    let mut out = Vec::new();
    unescape_into(b"a%2", &mut out);
    assert_eq!(out, b"a%2");
    let mut out = Vec::new();
    unescape_into(b"%zz%41%", &mut out);
    assert_eq!(out, b"%zzA%");
}

#[test]
fn errors_are_classified() {
    assert!(matches!(
        classify(83886179, "Operation cancelled".into()),
        PinentryError::Cancelled
    ));
    assert!(matches!(
        classify(99, String::new()),
        PinentryError::Cancelled
    ));
    assert!(matches!(
        classify(1, "Cancelled by user".into()),
        PinentryError::Cancelled
    ));
    assert!(matches!(
        classify(83886142, "Timeout".into()),
        PinentryError::TimedOut
    ));
    assert!(matches!(
        classify(83886081, "General error".into()),
        PinentryError::Failed(t) if t.contains("General error")
    ));
}

#[test]
fn the_pin_repeated_status_is_recognised() {
    assert!(is_pin_repeated(b"S PIN_REPEATED"));
    assert!(is_pin_repeated(b"S PIN_REPEATED 1"));
    assert!(is_pin_repeated(b"S PIN_REPEATED  extra args"));
    assert!(!is_pin_repeated(b"S PIN_REPEATEDLY"));
    assert!(!is_pin_repeated(b"S PINENTRY_LAUNCHED 4242 curses"));
    assert!(!is_pin_repeated(b"S"));
    assert!(!is_pin_repeated(b"# S PIN_REPEATED"));
    assert!(!is_pin_repeated(b"D PIN_REPEATED"));
    assert!(!is_pin_repeated(b"SPIN_REPEATED"));
    assert!(!is_pin_repeated(b"s pin_repeated"));
}

#[test]
fn a_pin_entry_does_not_show_its_pin() {
    let entry = PinEntry {
        pin: Zeroizing::new("97531864".into()),
        repeated: true,
    };
    let shown = format!("{entry:?}");
    assert!(!shown.contains("97531864"), "{shown}");
    assert!(shown.contains("repeated: true"), "{shown}");
}

#[test]
fn commands_follow_the_prompt() {
    let config = PinentryConfig {
        tty: Some("/dev/pts/3".into()),
        ..PinentryConfig::default()
    };
    let prompt = PinPrompt {
        title: "Smartcard".into(),
        description: "Card 4082%\nNurse".into(),
        prompt: "PIN:".into(),
        error: None,
        repeat: Some("Again:".into()),
    };
    let commands = commands(&config, &prompt).unwrap();
    assert_eq!(commands[0], "OPTION ttyname=/dev/pts/3");
    assert!(commands.contains(&"SETTIMEOUT 60".to_owned()));
    assert!(commands.contains(&"SETDESC Card 4082%25%0ANurse".to_owned()));
    assert!(commands.contains(&"SETREPEAT Again:".to_owned()));
    assert!(commands.contains(&"SETREPEATERROR PINs do not match".to_owned()));
    assert!(!commands.iter().any(|c| c.starts_with("SETERROR")));
    let long = PinPrompt {
        description: "x".repeat(2000),
        ..prompt
    };
    assert!(matches!(
        super::commands(&config, &long),
        Err(PinentryError::Failed(_))
    ));
}
