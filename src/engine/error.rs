//! The Engine API's errors: one enum, mapped to dockerd's status codes in exactly one place
//! ([`ApiError::status`]) and written in dockerd's shape, `{"message": "..."}`.

use http::StatusCode;

/// An error the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a parameter is invalid or unsupported.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the registry refused the credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the operation is forbidden on this object.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such object (or route).
    #[error("{0}")]
    NotFound(String),
    /// 409: the object's state or a name conflicts with the request.
    #[error("{0}")]
    Conflict(String),
    /// 304: nothing to do (start of a running container, stop of a stopped one).
    #[error("not modified")]
    NotModified,
    /// 501: the daemon does not implement this.
    #[error("{0}")]
    NotImplemented(String),
    /// 503: a daemon below (containerd) does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a real fault of the server.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status, as dockerd's `errdefs` map the same classes.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotModified => StatusCode::NOT_MODIFIED,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body (`None` for 304, which has none).
    pub fn body(&self) -> Option<Vec<u8>> {
        if matches!(self, ApiError::NotModified) {
            return None;
        }
        let mut b = serde_json::to_vec(&serde_json::json!({ "message": self.to_string() }))
            .unwrap_or_default();
        b.push(b'\n');
        Some(b)
    }

    /// A 500 for a fault of the server, saying what was being done.
    pub fn internal(doing: &str, err: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{doing}: {err}"))
    }

    /// The answer for a call the container lifecycle refuses (`refeng_spec::engine`), for the
    /// container the caller named `name` whose id is `id`.
    pub fn from_refusal(r: refeng_spec::engine::Refusal, name: &str, id: &str) -> ApiError {
        let message = r.message(name, id);
        match r.status() {
            404 => ApiError::NotFound(message),
            _ => ApiError::Conflict(message),
        }
    }

    /// The answer for a failed containerd call, by its gRPC code (containerd's errdefs classes
    /// map to dockerd's the same way).
    pub fn from_grpc(doing: &str, status: &tonic::Status) -> ApiError {
        use tonic::Code;
        let msg = format!("{doing}: {}", status.message());
        match status.code() {
            Code::NotFound => ApiError::NotFound(msg),
            Code::AlreadyExists | Code::FailedPrecondition => ApiError::Conflict(msg),
            Code::InvalidArgument | Code::OutOfRange => ApiError::BadRequest(msg),
            Code::Unimplemented => ApiError::NotImplemented(msg),
            Code::Unavailable => ApiError::Unavailable(msg),
            Code::Unauthenticated => ApiError::Unauthorized(msg),
            Code::PermissionDenied => ApiError::Forbidden(msg),
            _ => ApiError::Internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerds_shape_and_codes() {
        let e = ApiError::NotFound("No such container: x".into());
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.body().unwrap(),
            b"{\"message\":\"No such container: x\"}\n".to_vec()
        );
        assert_eq!(ApiError::NotModified.status(), StatusCode::NOT_MODIFIED);
        assert!(ApiError::NotModified.body().is_none());
        let e = ApiError::from_grpc("get image", &tonic::Status::not_found("image \"a\""));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let e = ApiError::from_grpc("x", &tonic::Status::failed_precondition("busy"));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        use refeng_spec::engine::Refusal;
        let e = ApiError::from_refusal(Refusal::NoSuchContainer, "web", "0");
        assert_eq!(
            (e.status(), e.to_string()),
            (StatusCode::NOT_FOUND, "No such container: web".into())
        );
        let e = ApiError::from_refusal(Refusal::StartPaused, "web", "0");
        assert_eq!(e.status(), StatusCode::CONFLICT);
    }
}
