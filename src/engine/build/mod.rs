//! Image builds: what of the builder belongs to the engine rather than to the pure model in
//! `refeng_spec::build` (the Dockerfile parser and the build fold): `.dockerignore` matching,
//! which reproduces Go's regexp engine on the patterns and so needs the regex crate.

pub mod dockerignore;
