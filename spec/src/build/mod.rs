//! Image builds from a Dockerfile, as dockerd's classic builder does them: the parser
//! ([`dockerfile`]), the word substitution it applies ([`words`]) and the build as a pure fold
//! over the image state ([`fold`]), which hands the steps that need a container or the context
//! to an executor as descriptions. The engine's other models live in this crate, and so does
//! this one: it is all pure functions of text and configs, no I/O. (`.dockerignore` matching
//! reproduces Go's regexp engine on the patterns and so lives with the engine, in
//! `src/engine/build/`, beside the regex crate.)

pub mod dockerfile;
pub mod fold;
pub mod go_text;
pub mod words;

pub use dockerfile::{parse, Dockerfile, Instruction, Located, ParseError};
pub use fold::{plan, BuildError, BuildOptions, ImageConfig, ImageSource, Plan};
