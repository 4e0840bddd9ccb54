//! The one error type of refeng-containerd's services and the one place it becomes a gRPC
//! status, with the codes containerd's `errdefs` package gives (errdefs/grpc.go `ToGRPC`), so a
//! Go client's `errdefs.IsNotFound(err)` and friends see what they would from containerd.

use tonic::{Code, Status};

/// An error of a containerd service, by errdefs class. The string is the subject, worded as
/// containerd words it (`namespace "x"`, `content digest sha256:...`); the class suffix is
/// added as containerd's wrapped errors add it (`...: not found`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// {0}: not found
    #[error("{0}: not found")]
    NotFound(String),
    /// {0}: already exists
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// {0}: invalid argument
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    /// {0}: failed precondition
    #[error("{0}: failed precondition")]
    FailedPrecondition(String),
    /// {0}: unavailable
    #[error("{0}: unavailable")]
    Unavailable(String),
    /// {0}: not implemented
    #[error("{0}: not implemented")]
    NotImplemented(String),
    /// {0}: aborted
    #[error("{0}: aborted")]
    Aborted(String),
    /// {0} (a write at an offset other than the ingest's)
    #[error("{0}")]
    OutOfRange(String),
    /// an error of the daemon itself (I/O, the metadata store); containerd reports those as Unknown
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code containerd's errdefs gives this class.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::NotImplemented(_) => Code::Unimplemented,
            Error::Aborted(_) => Code::Aborted,
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::Internal(_) => Code::Unknown,
        }
    }

    /// An internal error from anything displayable (I/O, the store), keeping its message.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }

    /// The error a gRPC status from a peer (a shim, another daemon) stands for, by code.
    pub fn from_status(status: &Status) -> Self {
        let msg = status.message().to_string();
        match status.code() {
            Code::NotFound => Error::NotFound(strip(msg, ": not found")),
            Code::AlreadyExists => Error::AlreadyExists(strip(msg, ": already exists")),
            Code::InvalidArgument => Error::InvalidArgument(strip(msg, ": invalid argument")),
            Code::FailedPrecondition => {
                Error::FailedPrecondition(strip(msg, ": failed precondition"))
            }
            Code::Unavailable => Error::Unavailable(strip(msg, ": unavailable")),
            Code::Unimplemented => Error::NotImplemented(strip(msg, ": not implemented")),
            Code::Aborted => Error::Aborted(strip(msg, ": aborted")),
            Code::OutOfRange => Error::OutOfRange(msg),
            _ => Error::Internal(msg),
        }
    }
}

fn strip(msg: String, suffix: &str) -> String {
    msg.strip_suffix(suffix).map(str::to_string).unwrap_or(msg)
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        Status::new(err.code(), err.to_string())
    }
}

impl From<redb::Error> for Error {
    fn from(err: redb::Error) -> Error {
        Error::internal("metadata store", err)
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(err: $t) -> Error {
                Error::internal("metadata store", err)
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_errdefs_codes_and_back() {
        let cases = [
            Error::NotFound("container \"x\"".into()),
            Error::AlreadyExists("image \"a\"".into()),
            Error::InvalidArgument("bad".into()),
            Error::FailedPrecondition("busy".into()),
            Error::Unavailable("shim".into()),
            Error::NotImplemented("checkpoint".into()),
            Error::Aborted("write".into()),
        ];
        for err in cases {
            let status: Status = err.clone().into();
            assert_eq!(Error::from_status(&status), err);
        }
        let status: Status = Error::NotFound("namespace \"n\"".into()).into();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "namespace \"n\": not found");
    }
}
