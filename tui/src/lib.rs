//! Fovea's terminal UI: browse layers, features and locations of a recorded
//! image with the keyboard, see the four reconstructions and maximizations
//! as pictures in the terminal. Talks to the daemon only through the client
//! library.

pub mod app;
pub mod graphics;
pub mod keys;
pub mod pictures;
pub mod save;
pub mod ui;
pub mod worker;
