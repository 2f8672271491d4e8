use super::*;

pub(super) fn cases() -> Vec<Case> {
    Vec::new()
}
