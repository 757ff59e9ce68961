//! The tray's icons: one drawn for each state (`tray/icons/*.svg`), rendered to PNG at 22, 32
//! and 48 px by `tray/icons/render.sh` and embedded here — nothing is converted at run time.

/// One icon per state the tray can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IconKind {
    /// The agent's socket does not answer.
    AgentNotRunning,
    /// pcscd lists no reader.
    NoReader,
    /// Readers, no card.
    NoCard,
    /// A card is in, not signed in.
    CardInserted,
    /// The agent is asking for the PIN or proving the card to the service.
    SigningIn,
    /// Signed in.
    SignedIn,
    /// Signed in; the certificate expires inside the warning window.
    ExpiringSoon,
    /// Expired, PIN blocked or cancelled: the Registration Authority is needed.
    NeedsRa,
    /// A renewal, repair or restore is running.
    InProgress,
    /// pcscd is away, the service unreachable, or another failure.
    Error,
}

/// A decoded icon: RGBA pixels, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width and height in pixels.
    pub size: u32,
    /// RGBA, 4 bytes a pixel.
    pub rgba: Vec<u8>,
}

macro_rules! pngs {
    ($size:literal) => {
        [
            include_bytes!(concat!("../icons/", $size, "/agent-not-running.png")).as_slice(),
            include_bytes!(concat!("../icons/", $size, "/no-reader.png")),
            include_bytes!(concat!("../icons/", $size, "/no-card.png")),
            include_bytes!(concat!("../icons/", $size, "/card-inserted.png")),
            include_bytes!(concat!("../icons/", $size, "/signing-in.png")),
            include_bytes!(concat!("../icons/", $size, "/signed-in.png")),
            include_bytes!(concat!("../icons/", $size, "/expiring-soon.png")),
            include_bytes!(concat!("../icons/", $size, "/needs-ra.png")),
            include_bytes!(concat!("../icons/", $size, "/in-progress.png")),
            include_bytes!(concat!("../icons/", $size, "/error.png")),
        ]
    };
}

const PNG_22: [&[u8]; 10] = pngs!("22");
const PNG_32: [&[u8]; 10] = pngs!("32");
const PNG_48: [&[u8]; 10] = pngs!("48");

/// The sizes shipped, in pixels.
pub const SIZES: [u32; 3] = [22, 32, 48];

impl IconKind {
    /// Every icon, in a fixed order.
    pub const ALL: [IconKind; 10] = [
        IconKind::AgentNotRunning,
        IconKind::NoReader,
        IconKind::NoCard,
        IconKind::CardInserted,
        IconKind::SigningIn,
        IconKind::SignedIn,
        IconKind::ExpiringSoon,
        IconKind::NeedsRa,
        IconKind::InProgress,
        IconKind::Error,
    ];

    /// The icon's file name without extension (`signed-in`).
    pub fn name(self) -> &'static str {
        match self {
            IconKind::AgentNotRunning => "agent-not-running",
            IconKind::NoReader => "no-reader",
            IconKind::NoCard => "no-card",
            IconKind::CardInserted => "card-inserted",
            IconKind::SigningIn => "signing-in",
            IconKind::SignedIn => "signed-in",
            IconKind::ExpiringSoon => "expiring-soon",
            IconKind::NeedsRa => "needs-ra",
            IconKind::InProgress => "in-progress",
            IconKind::Error => "error",
        }
    }

    /// The embedded PNG at `size` (22, 32 or 48; other sizes get the 48 px one).
    pub fn png(self, size: u32) -> &'static [u8] {
        let index = IconKind::ALL.iter().position(|k| *k == self).unwrap_or(0);
        match size {
            22 => PNG_22[index],
            32 => PNG_32[index],
            _ => PNG_48[index],
        }
    }

    /// The icon at `size`, decoded.
    pub fn pixels(self, size: u32) -> Result<Pixels, png::DecodingError> {
        decode_png(self.png(size))
    }
}

/// Decodes an 8-bit RGBA PNG (as `render.sh` writes them).
pub fn decode_png(bytes: &[u8]) -> Result<Pixels, png::DecodingError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::ALPHA | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let mut rgba = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut rgba)?;
    rgba.truncate(info.buffer_size());
    Ok(Pixels {
        size: info.width,
        rgba,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_state_has_its_own_icon_at_every_size() {
        for size in SIZES {
            let mut seen = HashSet::new();
            for kind in IconKind::ALL {
                let pixels = kind.pixels(size).unwrap();
                assert_eq!(pixels.size, size, "{}", kind.name());
                assert_eq!(pixels.rgba.len(), (size * size * 4) as usize);
                assert!(
                    seen.insert(pixels.rgba.clone()),
                    "{} at {size} px is another icon's",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn icons_are_not_one_shape_recoloured() {
        // The white strokes (the glyphs and badges drawn on the card) differ between any two
        // states: recolouring one drawing would leave them the same.
        let masks: Vec<Vec<bool>> = IconKind::ALL
            .iter()
            .map(|k| {
                k.pixels(48)
                    .unwrap()
                    .rgba
                    .chunks(4)
                    .map(|p| p[3] > 127 && p[..3].iter().all(|c| *c > 220))
                    .collect()
            })
            .collect();
        for (i, a) in masks.iter().enumerate() {
            for b in &masks[i + 1..] {
                let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
                assert!(differing > 20, "two icons share a shape");
            }
        }
    }
}
