//! Settings chosen by name (on a command line, in an environment variable):
//! each value with its name and a one-line description, so front ends list
//! and parse them without the engine knowing any argument parser.

pub trait Choice: Copy + Send + Sync + 'static {
    /// Every value, its name and what it means.
    const CHOICES: &'static [(Self, &'static str, &'static str)];

    fn from_name(name: &str) -> Option<Self> {
        Self::CHOICES
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
            .map(|(v, _, _)| *v)
    }
}
