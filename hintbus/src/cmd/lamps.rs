//! Prints what an AMI event means for the lamps on the phones, one line per change.

use ami::Message;
use std::time::SystemTime;

/// One line for a device, presence or hint event; `None` for other events.
pub fn describe(server: &str, ev: &Message) -> Option<String> {
    let what = match ev.event_name()? {
        "DeviceStateChange" => format!("device   {:<28} {}", ev.get("Device")?, ev.get("State")?),
        "PresenceStateChange" => format!(
            "presence {:<28} {} {} {}",
            ev.get("Presentity")?,
            ev.get("Status")?,
            ev.get("Subtype").unwrap_or(""),
            ev.get("Message").unwrap_or("")
        ),
        "ExtensionStatus" => {
            format!(
                "lamp     {:<28} {}",
                format!("{}@{}", ev.get("Exten")?, ev.get("Context")?),
                lamp(ev.get("StatusText")?)
            )
        }
        _ => return None,
    };
    Some(format!("{}  {server:<6} {what}", clock()))
}

/// The lamp as a BLF key shows it.
fn lamp(status_text: &str) -> String {
    let symbol = match status_text {
        "Idle" => "○ off",
        "InUse" | "Busy" => "● red",
        "Ringing" | "InUse&Ringing" => "◎ blinking",
        "Hold" | "InUse&Hold" => "◐ slow blink",
        _ => "· dark",
    };
    format!("{symbol:<14} ({status_text})")
}

fn clock() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        d.subsec_millis()
    )
}
