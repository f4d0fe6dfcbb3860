//! The `__<key>_numeric` companion of a decimal: its exact text as a `Decimal128(32, 6)`.
