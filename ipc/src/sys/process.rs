//! OS calls about child processes (being written: see issue 4).
