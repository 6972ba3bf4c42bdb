//! What a step did to an enrollment: the outcome of one line of the journey log. Stored and
//! shown as its label (`sent`, `yes`, `arm 2`, …).

use std::fmt;
use std::str::FromStr;

/// What a step did to an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Sent,
    Skipped,
    /// A send held back (a frequency cap, a send window): it waits and tries again.
    Deferred,
    /// Arrived at a wait.
    Waiting,
    /// Left a wait (its time passed or its condition held).
    Waited,
    /// A branch's condition held.
    Yes,
    No,
    /// The split arm taken, counted from 1 in written order.
    Arm(u32),
    Tagged,
    Scored,
    HandedOff,
    Enrolled,
    /// Ended by the engine, not by a step (its campaign version is no longer deployed).
    Exited,
    Completed,
    /// The campaign's `exit_when` goal held.
    Goal,
}

impl Outcome {
    /// Whether the enrollment arrived at the step with this line (a wait left or a goal
    /// reached happen where it already was).
    pub fn arrives(self) -> bool {
        !matches!(self, Outcome::Waited | Outcome::Goal)
    }

    /// Whether the enrollment went on along the step's `next` edge with this line.
    pub fn goes_on(self) -> bool {
        !matches!(
            self,
            Outcome::Waiting | Outcome::Goal | Outcome::Completed | Outcome::HandedOff
        )
    }
}

impl Outcome {
    /// The label stored and shown: `sent`, `arm 2`, …
    pub fn label(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            Outcome::Sent => "sent",
            Outcome::Skipped => "skipped",
            Outcome::Deferred => "deferred",
            Outcome::Waiting => "waiting",
            Outcome::Waited => "waited",
            Outcome::Yes => "yes",
            Outcome::No => "no",
            Outcome::Arm(n) => return std::borrow::Cow::Owned(format!("arm {n}")),
            Outcome::Tagged => "tagged",
            Outcome::Scored => "scored",
            Outcome::HandedOff => "handed_off",
            Outcome::Enrolled => "enrolled",
            Outcome::Exited => "exited",
            Outcome::Completed => "completed",
            Outcome::Goal => "goal",
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(label: &str) -> Result<Self, String> {
        Ok(match label {
            "sent" => Outcome::Sent,
            "skipped" => Outcome::Skipped,
            "deferred" => Outcome::Deferred,
            "waiting" => Outcome::Waiting,
            "waited" => Outcome::Waited,
            "yes" => Outcome::Yes,
            "no" => Outcome::No,
            "tagged" => Outcome::Tagged,
            "scored" => Outcome::Scored,
            "handed_off" => Outcome::HandedOff,
            "enrolled" => Outcome::Enrolled,
            "exited" => Outcome::Exited,
            "completed" => Outcome::Completed,
            "goal" => Outcome::Goal,
            other => match other.strip_prefix("arm ").and_then(|n| n.parse().ok()) {
                Some(n) => Outcome::Arm(n),
                None => return Err(format!("unknown journey outcome {other:?}")),
            },
        })
    }
}

impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, label: &&str) -> bool {
        label.parse() == Ok(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for o in [Outcome::Sent, Outcome::Arm(2), Outcome::HandedOff, Outcome::Goal] {
            assert_eq!(o.to_string().parse::<Outcome>(), Ok(o));
        }
        assert!("arm x".parse::<Outcome>().is_err());
    }
}
