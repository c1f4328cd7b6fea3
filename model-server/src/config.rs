//! Command-line flags, each with an environment-variable fallback of the same name
//! (`--max-batch-tokens` ↔ `MAX_BATCH_TOKENS`), as the ModelEndpoint CRD will set them.

use crate::backend::{F32Kernel, Int8Kernel, KernelConfig};
use crate::infer::Limits;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
pub use loadgate_api::embed::Dtype;
use std::net::IpAddr;
use std::path::PathBuf;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// model-server: an HTTP embedding server for sentence-transformers BERT models.
#[derive(Clone, Parser)]
#[command(name = "model-server", version, about)]
pub struct Args {
    /// Model to serve: a local directory with config.json, model.safetensors, tokenizer.json
    /// (and 1_Pooling/config.json, sentence_bert_config.json), or a Hugging Face Hub id such as
    /// sentence-transformers/all-MiniLM-L6-v2, downloaded where the network allows.
    #[arg(long, env = "MODEL", default_value = "models/all-MiniLM-L6-v2")]
    pub model: String,

    /// Name reported in responses and /info; defaults to the model's directory name or Hub id.
    #[arg(long, env = "SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,

    /// Where Hub downloads are cached.
    #[arg(long, env = "MODEL_CACHE_DIR", default_value = "/tmp/loadgate-models")]
    pub model_cache_dir: PathBuf,

    /// Hugging Face Hub base URL for Hub ids (a mirror, or the real Hub).
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub hub_endpoint: String,

    /// Token for gated or private Hub models; never logged.
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub hub_token: Option<String>,

    /// Prompt prefixed to every text a request does not name one for (`prompt_name`), from the
    /// model's `config_sentence_transformers.json` prompts (e.g. `query` for an E5 or BGE model);
    /// default: that file's `default_prompt_name`, else none.
    #[arg(long, env = "DEFAULT_PROMPT_NAME")]
    pub default_prompt_name: Option<String>,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on. It answers (with /health 503) while the model is still loading.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Most padded tokens in one forward pass. Bounds memory: activations grow with batch x
    /// sequence length (a 20-text batch with two 256-token texts peaked at 513 MB unbounded).
    #[arg(long, env = "MAX_BATCH_TOKENS", default_value_t = 8192)]
    pub max_batch_tokens: usize,

    /// Most texts in one forward pass; concurrent requests are coalesced up to this.
    #[arg(long, env = "MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,

    /// Most texts in one request; more is answered 413.
    #[arg(long, env = "MAX_CLIENT_BATCH_SIZE", default_value_t = 64)]
    pub max_client_batch_size: usize,

    /// Most requests admitted at once (queued or running); more are answered 429 at once with
    /// Retry-After. Lower it to shed load sooner, raise it to queue deeper.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    pub max_concurrent_requests: usize,

    /// Longest input in tokens (special tokens included); defaults to the model's max_seq_length
    /// (256 for all-MiniLM-L6-v2). Longer texts are truncated, or refused when truncate is false.
    #[arg(long, env = "MAX_INPUT_LENGTH")]
    pub max_input_length: Option<usize>,

    /// Forward passes that run in parallel; defaults to the number of available cores.
    #[arg(long, env = "INFERENCE_WORKERS")]
    pub inference_workers: Option<usize>,

    /// Precision of the dense layers: f32 (exact to sentence-transformers, the default) or int8
    /// (products on AVX512-VNNI, calibrated at load, cosine ≥ 0.999 to f32; refused on CPUs
    /// without VNNI). The same values as a ModelEndpoint's `spec.server.dtype`.
    #[arg(long, env = "DTYPE", default_value = "f32", value_parser = dtype_parser())]
    pub dtype: Dtype,

    /// Threads each forward pass uses. 1 with one worker per core was fastest on 2 cores.
    #[arg(long, env = "THREADS_PER_WORKER", default_value_t = 1)]
    pub threads_per_worker: usize,

    /// Largest request body in bytes; larger is answered 413.
    #[arg(long, env = "PAYLOAD_LIMIT", default_value_t = 2_000_000)]
    pub payload_limit: usize,

    /// Seconds a request may take before it is answered 408 and dropped from the queue.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds a client may take to send a request's headers, counted from when the server starts
    /// waiting for them: from accepting the connection, or on a kept-alive one from the previous
    /// answer, so this is also how long an idle connection is kept. Past it the connection is
    /// closed, with a 408 when part of a request had arrived.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a request body may take to arrive in full once the server starts reading it; past
    /// it the request is answered 408 and its body-read slot goes to the next request. 10 s
    /// still admits the 2 MB default `--payload-limit` at 200 KB/s.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub body_read_timeout_secs: u64,

    /// Most client connections open at once. Past it a new connection is answered 503 with
    /// Retry-After and closed (GET /health is still answered, for probes). 1024 is 8x the default
    /// `--max-concurrent-requests`, room for clients' idle keep-alive pools, while bounding the
    /// memory and file descriptors idle or slow connections can take.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// The backend's kernel knobs.
    #[command(flatten)]
    pub kernels: KernelArgs,
}

/// The backend's kernel knobs, for measuring one kernel against another with one binary; the
/// defaults run the fastest this CPU has. Their variables keep the `MODEL_SERVER_` prefix the
/// benchmarks and `scripts/test.sh` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct KernelArgs {
    /// Kernel of the f32 matrix products.
    #[arg(long, env = "MODEL_SERVER_KERNEL", value_enum, default_value_t = F32Kernel::Auto)]
    pub kernel: F32Kernel,

    /// Kernel of the `--dtype int8` matrix products.
    #[arg(long, env = "MODEL_SERVER_INT8_KERNEL", value_enum, default_value_t = Int8Kernel::Auto)]
    pub int8_kernel: Int8Kernel,

    /// Whether the packed weights ask Linux for 2 MiB transparent huge pages
    /// (`madvise(MADV_HUGEPAGE)`: far fewer TLB misses as a pass streams the weights); `off` to
    /// measure the difference.
    #[arg(long, env = "MODEL_SERVER_HUGE_PAGES", value_enum, default_value_t = HugePages::On)]
    pub huge_pages: HugePages,
}

/// `--huge-pages`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HugePages {
    /// Ask for huge pages (the kernel may still say no).
    On,
    /// Plain allocations on 4 KiB pages.
    Off,
}

impl KernelArgs {
    /// The knobs from their environment variables alone (defaults where unset), parsed as the
    /// flags are.
    ///
    /// # Errors
    /// A variable set to a value its flag does not take.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(Parser)]
        #[command(name = "model-server")]
        struct EnvOnly {
            #[command(flatten)]
            kernels: KernelArgs,
        }
        EnvOnly::try_parse_from(["model-server"]).map(|parsed| parsed.kernels)
    }

    /// The backend's configuration these knobs describe.
    pub fn config(self) -> KernelConfig {
        KernelConfig {
            kernel: self.kernel,
            int8_kernel: self.int8_kernel,
            huge_pages: self.huge_pages == HugePages::On,
        }
    }
}

/// `--dtype`'s values, as the CRD spells them.
fn dtype_parser() -> impl TypedValueParser<Value = Dtype> {
    PossibleValuesParser::new([Dtype::F32.as_str(), Dtype::Int8.as_str()]).map(|value| {
        if value == Dtype::Int8.as_str() {
            Dtype::Int8
        } else {
            Dtype::F32
        }
    })
}

impl std::fmt::Debug for Args {
    /// Every setting, with the Hub token redacted (the config is logged at start-up).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Args {
            model,
            served_model_name,
            model_cache_dir,
            hub_endpoint,
            hub_token,
            default_prompt_name,
            host,
            port,
            max_batch_tokens,
            max_batch_size,
            max_client_batch_size,
            max_concurrent_requests,
            max_input_length,
            inference_workers,
            dtype,
            threads_per_worker,
            payload_limit,
            request_timeout_secs,
            header_read_timeout_secs,
            body_read_timeout_secs,
            max_connections,
            log_format,
            kernels,
        } = self;
        f.debug_struct("Args")
            .field("model", model)
            .field("served_model_name", served_model_name)
            .field("model_cache_dir", model_cache_dir)
            .field("hub_endpoint", hub_endpoint)
            .field("hub_token", &hub_token.as_ref().map(|_| "<redacted>"))
            .field("default_prompt_name", default_prompt_name)
            .field("host", host)
            .field("port", port)
            .field("max_batch_tokens", max_batch_tokens)
            .field("max_batch_size", max_batch_size)
            .field("max_client_batch_size", max_client_batch_size)
            .field("max_concurrent_requests", max_concurrent_requests)
            .field("max_input_length", max_input_length)
            .field("inference_workers", inference_workers)
            .field("dtype", dtype)
            .field("threads_per_worker", threads_per_worker)
            .field("payload_limit", payload_limit)
            .field("request_timeout_secs", request_timeout_secs)
            .field("header_read_timeout_secs", header_read_timeout_secs)
            .field("body_read_timeout_secs", body_read_timeout_secs)
            .field("max_connections", max_connections)
            .field("log_format", log_format)
            .field("kernels", kernels)
            .finish()
    }
}

impl Args {
    /// Hub settings for `--model` values that are Hub ids.
    pub fn hub(&self) -> crate::model::Hub {
        crate::model::Hub {
            endpoint: self.hub_endpoint.clone(),
            token: self.hub_token.clone(),
            cache_dir: self.model_cache_dir.clone(),
        }
    }

    /// The batching and admission limits these flags describe.
    pub fn limits(&self) -> Limits {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Limits {
            max_batch_tokens: self.max_batch_tokens,
            max_batch_size: self.max_batch_size,
            max_client_batch_size: self.max_client_batch_size,
            max_concurrent_requests: self.max_concurrent_requests,
            inference_workers: self.inference_workers.unwrap_or(cores).max(1),
            threads_per_worker: self.threads_per_worker.max(1),
        }
    }

    /// The backend's kernel configuration (`--kernel`, `--int8-kernel`, `--huge-pages`).
    pub fn kernel_config(&self) -> KernelConfig {
        self.kernels.config()
    }

    /// The name answers carry: `--served-model-name`, else the last part of `--model`.
    pub fn model_name(&self) -> String {
        self.served_model_name.clone().unwrap_or_else(|| {
            let trimmed = self.model.trim_end_matches('/');
            if std::path::Path::new(trimmed).is_dir() {
                trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
            } else {
                trimmed.to_owned()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_env_names_parse() {
        let args = Args::try_parse_from(["model-server", "--max-batch-size", "8"]).unwrap();
        assert_eq!(args.max_batch_size, 8);
        assert_eq!(args.port, 8080);
        assert_eq!(args.limits().threads_per_worker, 1);
        assert!(Args::try_parse_from(["model-server", "--port", "x"]).is_err());
        assert_eq!(args.dtype, Dtype::F32);
        assert_eq!(
            (
                args.header_read_timeout_secs,
                args.body_read_timeout_secs,
                args.max_connections
            ),
            (10, 10, 1024)
        );
        let limited = Args::try_parse_from([
            "model-server",
            "--header-read-timeout-secs",
            "3",
            "--body-read-timeout-secs",
            "4",
            "--max-connections",
            "50",
        ])
        .unwrap();
        assert_eq!(
            (
                limited.header_read_timeout_secs,
                limited.body_read_timeout_secs,
                limited.max_connections
            ),
            (3, 4, 50)
        );
        let int8 = Args::try_parse_from(["model-server", "--dtype", "int8"]).unwrap();
        assert_eq!(int8.dtype, Dtype::Int8);
        let error = Args::try_parse_from(["model-server", "--dtype", "bf16"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("f32") && error.contains("int8"), "{error}");
        let secret = Args::try_parse_from(["model-server", "--hub-token", "hf_secret"]).unwrap();
        assert!(
            !format!("{secret:?}").contains("hf_secret"),
            "the token is redacted"
        );
    }

    #[test]
    fn kernel_knobs_parse_into_the_backend_config_and_are_in_the_help() {
        let args = Args::try_parse_from([
            "model-server",
            "--kernel",
            "gemm",
            "--int8-kernel",
            "vnni",
            "--huge-pages",
            "off",
        ])
        .unwrap();
        assert_eq!(
            args.kernel_config(),
            KernelConfig {
                kernel: F32Kernel::Gemm,
                int8_kernel: Int8Kernel::Vnni,
                huge_pages: false,
            }
        );
        let auto = Args::try_parse_from([
            "model-server",
            "--kernel",
            "auto",
            "--int8-kernel",
            "auto",
            "--huge-pages",
            "on",
        ])
        .unwrap();
        assert_eq!(auto.kernel_config(), KernelConfig::default());
        let error = Args::try_parse_from(["model-server", "--kernel", "avx2"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("auto") && error.contains("gemm"), "{error}");
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for name in [
            "--kernel",
            "MODEL_SERVER_KERNEL",
            "--int8-kernel",
            "MODEL_SERVER_INT8_KERNEL",
            "--huge-pages",
            "MODEL_SERVER_HUGE_PAGES",
        ] {
            assert!(help.contains(name), "--help lists {name}");
        }
    }
}
