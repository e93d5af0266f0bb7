//! The app's log output (`Hooks::init_logger`): Loco's logger as `logger:` in
//! `config/*.yaml` configures it (`enable`, `level`, `format` compact, pretty or json,
//! `override_filter`, `file_appender`), with one addition: every line written while a
//! request is served carries that request's ID (`request_id`), in every environment,
//! whether or not the per-request span (`server.middlewares.logger`) is on.
//!
//! The ID is the task-local of the request-ID layer (`middleware::request_id`), read only
//! when a line is actually written: a request that logs nothing pays nothing here.

use std::{fmt, sync::OnceLock};

use loco_rs::{
    app::Hooks,
    config::{Logger, LoggerFileAppender},
    logger::{init_env_filter, Format, Rotation},
    Error, Result,
};
use tracing::{Event, Subscriber};
use tracing_appender::{non_blocking::WorkerGuard, rolling};
use tracing_subscriber::{
    fmt::{format::Writer, writer::MakeWriter, FmtContext, FormatEvent, FormatFields},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
    EnvFilter, Layer, Registry,
};

use crate::middleware::request_id;

/// Keeps the non-blocking file writer's thread alive as long as the process.
static FILE_WRITER: OnceLock<WorkerGuard> = OnceLock::new();

/// Installs the process's log output as `config` says, as Loco's `logger::init` does.
///
/// # Errors
/// An `override_filter` that is not a filter, a log folder that cannot be created, or
/// another logger already installed; each in one line naming the key.
pub fn init<H: Hooks>(config: &Logger) -> Result<()> {
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(file) = config.file_appender.as_ref().filter(|file| file.enable) {
        layers.push(file_layer(file)?);
    }
    if config.enable {
        layers.push(layer(std::io::stdout, &config.format, true));
    }
    if layers.is_empty() {
        return Ok(());
    }
    if let Some(filter) = &config.override_filter {
        // Loco's filter builder would panic on it.
        EnvFilter::try_new(filter)
            .map_err(|e| Error::Message(format!("logger.override_filter: {e}")))?;
    }
    let filter = init_env_filter::<H>(config.override_filter.as_ref(), &config.level);
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| Error::Message(format!("logger: {e}")))
}

/// A formatting layer writing to `writer` in `format`, each line written during a
/// request carrying its ID: `request_id=…` at the end of a text line's first line, a
/// `"request_id"` key in a JSON line.
pub fn layer<W>(writer: W, format: &Format, ansi: bool) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    // The line is formatted through `WithRequestId`'s own writer, which knows nothing of
    // colours: the format is told directly.
    match format {
        Format::Compact => fmt
            .compact()
            .map_event_format(|format| WithRequestId::text(format.with_ansi(ansi)))
            .boxed(),
        Format::Pretty => fmt
            .pretty()
            .map_event_format(|format| WithRequestId::text(format.with_ansi(ansi)))
            .boxed(),
        Format::Json => fmt.json().map_event_format(WithRequestId::json).boxed(),
    }
}

/// `logger.file_appender`, as Loco builds it.
fn file_layer(file: &LoggerFileAppender) -> Result<Box<dyn Layer<Registry> + Send + Sync>> {
    let rotation = match file.rotation {
        Rotation::Minutely => rolling::Rotation::MINUTELY,
        Rotation::Hourly => rolling::Rotation::HOURLY,
        Rotation::Daily => rolling::Rotation::DAILY,
        Rotation::Never => rolling::Rotation::NEVER,
    };
    let dir = file.dir.as_deref().unwrap_or("./logs");
    let appender = rolling::Builder::new()
        .rotation(rotation)
        .max_log_files(file.max_log_files)
        .filename_prefix(file.filename_prefix.clone().unwrap_or_default())
        .filename_suffix(file.filename_suffix.clone().unwrap_or_default())
        .build(dir)
        .map_err(|e| Error::Message(format!("logger.file_appender.dir: `{dir}`: {e}")))?;
    if !file.non_blocking {
        return Ok(layer(appender, &file.format, false));
    }
    let (writer, guard) = tracing_appender::non_blocking(appender);
    FILE_WRITER
        .set(guard)
        .map_err(|_| Error::Message("logger.file_appender: already installed".into()))?;
    Ok(layer(writer, &file.format, false))
}

/// A line format with the current request's ID added.
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<F> WithRequestId<F> {
    const fn text(inner: F) -> Self {
        Self { inner, json: false }
    }

    const fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(id) = request_id::current() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut spliced = Splice {
            out: &mut writer,
            id: id.to_str().unwrap_or_default(),
            json: self.json,
            done: false,
        };
        self.inner
            .format_event(ctx, Writer::new(&mut spliced), event)
    }
}

/// Passes a formatted line through, writing the request ID into it on the way: after a
/// JSON line's opening brace, or before a text line's first line break. Nothing is
/// buffered.
struct Splice<'a, 'w> {
    out: &'a mut Writer<'w>,
    /// Letters, digits, `_`, `-` and `@` only (`request_id::for_request`): nothing to
    /// escape, in JSON or in text.
    id: &'a str,
    json: bool,
    done: bool,
}

impl fmt::Write for Splice<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.done || s.is_empty() {
            return self.out.write_str(s);
        }
        if self.json {
            self.done = true;
            return match s.strip_prefix('{') {
                Some(rest) => {
                    write!(self.out, "{{\"request_id\":\"{}\",", self.id)?;
                    self.out.write_str(rest)
                }
                None => self.out.write_str(s),
            };
        }
        match s.find('\n') {
            Some(at) => {
                self.done = true;
                self.out.write_str(&s[..at])?;
                write!(self.out, " request_id={}", self.id)?;
                self.out.write_str(&s[at..])
            }
            None => self.out.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use axum::{
        body::Body,
        http::{HeaderValue, Request},
        response::Response,
    };
    use tower::{Layer as _, ServiceExt};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `format` writes for one line logged outside a request and one inside a
    /// request that came with `x-request-id: abc-1`.
    async fn written(format: Format) -> Vec<String> {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::registry().with(layer(move || writer.clone(), &format, false));
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::info!(n = 1, "outside");
        let handler = tower::service_fn(|_: Request<Body>| async {
            tracing::warn!(n = 2, "inside");
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        });
        let mut request = Request::new(Body::empty());
        request
            .headers_mut()
            .insert("x-request-id", HeaderValue::from_static("abc-1"));
        request_id::RequestIdLayer
            .layer(handler)
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("UTF-8");
        text.lines().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn text_lines_of_a_request_end_with_its_id() {
        for format in [Format::Compact, Format::Pretty] {
            let lines = written(format).await;
            let outside = lines
                .iter()
                .find(|l| l.contains("outside"))
                .expect("logged");
            assert!(!outside.contains("request_id"), "{outside}");
            let inside = lines.iter().find(|l| l.contains("inside")).expect("logged");
            assert!(inside.ends_with(" request_id=abc-1"), "{inside}");
        }
    }

    #[tokio::test]
    async fn json_lines_of_a_request_have_its_id_as_a_key() {
        let lines = written(Format::Json).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        let parsed: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(parsed[0]["fields"]["message"], "outside");
        assert!(parsed[0].get("request_id").is_none(), "{}", lines[0]);
        assert_eq!(parsed[1]["fields"]["message"], "inside");
        assert_eq!(parsed[1]["request_id"], "abc-1");
        assert_eq!(parsed[1]["level"], "WARN");
    }
}
