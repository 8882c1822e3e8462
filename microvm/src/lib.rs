//! twinbox-microvm
