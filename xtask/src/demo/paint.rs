//! Colour on a terminal (none when piped or with `NO_COLOR`).

pub struct Paint {
    on: bool,
}

impl Paint {
    pub fn new() -> Paint {
        // SAFETY: isatty has no preconditions.
        let tty = unsafe { libc::isatty(1) } == 1;
        Paint {
            on: tty && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    pub fn c(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}
