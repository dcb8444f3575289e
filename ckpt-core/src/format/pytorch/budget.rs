//! The memory a `.pt` file may make ckpt spend while reading it, whatever the file holds: 6 ×
//! its size plus 48 MiB of charged structures, which with what the charges leave out (the
//! allocator's own overhead) keeps the process under the promise of 8 × the file plus 64 MiB.
//! The unpickler, the header and the value tree charge what they build as they build it, so a
//! file whose structure would outgrow the bound is refused long before it is built, instead of
//! ballooning: a pickle of ten million `None`s, a list fetched from the memo again and again, a
//! tensor copied out of its storage many times over.

use super::error::{PtError, PtErrorKind};

/// What may still be spent, in bytes.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    /// The budget of a file of `len` bytes.
    pub(crate) fn for_file(len: u64) -> Self {
        let limit = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .saturating_mul(6)
            .saturating_add(48 << 20);
        Budget { left: limit, limit }
    }

    /// Spends `bytes` on `what`, or refuses the file if that goes over the bound.
    pub(crate) fn charge(&mut self, bytes: usize, what: &str) -> Result<(), PtError> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(PtErrorKind::Limit {
                what: format!(
                    "{what} would take more than the {} MiB of memory a file of this size may \
                     (6 × its size + 48 MiB)",
                    self.limit >> 20
                ),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_the_bound() {
        let mut budget = Budget::for_file(1 << 20);
        assert!(budget.charge(54 << 20, "all of it").is_ok());
        let err = budget.charge(1, "one byte more").unwrap_err();
        assert_eq!(
            err.to_string(),
            "limit exceeded: one byte more would take more than the 54 MiB of memory a file of \
             this size may (6 × its size + 48 MiB)"
        );
    }
}
