//! twinbox-lessons
