//! In-process throughput of the candle backend: sentences/s at batch 1, 8 and 32, no HTTP.
//! bench/model_server.py runs it beside the same measurement on sentence-transformers (PyTorch).
//!
//! Usage: inprocess MODEL_DIR [SECONDS_PER_BATCH_SIZE] [BATCH_SIZES, default 1,8,32] — prints one
//! JSON line per batch size, naming the matrix kernel this CPU runs and how much of the process is
//! on huge pages. `DTYPE=int8` measures the int8 layers (`--dtype int8`). `GAP_US=600` sleeps that
//! long between passes, as the worker idles between a lone HTTP client's requests (the pass runs
//! slower after an idle gap on a VM: compare with and without).

use model_server::backend::candle::CandleBert;
use model_server::backend::{EmbeddingBackend, KernelConfig};
use model_server::model;
use model_server::tokenize::TextTokenizer;
use std::time::{Duration, Instant};

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog near the river bank.";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".to_owned());
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4.0);
    let batch_sizes: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,8,32".to_owned())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let files = model::read_dir(std::path::Path::new(&dir))?;
    // The kernel knobs as the server reads them, from MODEL_SERVER_KERNEL & co.
    let kernels = KernelConfig::from_env()?;
    let mut backend = CandleBert::load(&files, &kernels)?;
    let tokenizer = TextTokenizer::from_file(&files.tokenizer, 256)?;
    let dtype = std::env::var("DTYPE").unwrap_or_else(|_| "f32".to_owned());
    match dtype.as_str() {
        "f32" => {}
        "int8" => {
            backend.quantize_int8(&tokenizer)?;
        }
        other => anyhow::bail!("DTYPE={other}: expected f32 or int8"),
    }
    let ids = tokenizer.encode(0, SENTENCE, true)?;
    let gap = std::env::var("GAP_US")
        .ok()
        .map(|us| us.parse().map(Duration::from_micros))
        .transpose()?;
    let kernel = if dtype == "int8" {
        model_server::backend::quantized::Kernel::best(kernels.int8_kernel).name()
    } else {
        backend.kernel().name()
    };
    // As the server runs a lone request: one text is one pass split with the helper thread; more
    // texts are sharded over the threads (the server's queue shares them out over its workers).
    let helper = model_server::backend::team::Helper::spawn("helper".into())?;
    let embed = |batch: &[&[u32]]| {
        if batch.len() == 1 && rayon::current_num_threads() > 1 {
            helper.pass(|team| backend.embed_with_helper(batch, team))
        } else {
            backend.embed(batch)
        }
    };
    for batch_size in batch_sizes {
        let batch: Vec<&[u32]> = vec![ids.as_slice(); batch_size];
        for _ in 0..3 {
            embed(&batch)?;
        }
        let mut latencies = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs_f64(seconds) {
            let t = Instant::now();
            embed(&batch)?;
            latencies.push(t.elapsed().as_secs_f64());
            if let Some(gap) = gap {
                std::thread::sleep(gap);
            }
        }
        let total = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let p50 = latencies[latencies.len() / 2] * 1000.0;
        let busy: f64 = latencies.iter().sum();
        let rate = (latencies.len() * batch_size) as f64 / if gap.is_some() { busy } else { total };
        let huge = model_server::backend::pages::anon_huge_page_bytes().unwrap_or(0) >> 20;
        println!(
            r#"{{"engine":"candle","dtype":"{dtype}","kernel":"{kernel}","threads":{},"batch":{batch_size},"tokens":{},"sentences_per_s":{rate:.1},"p50_ms":{p50:.2},"huge_page_mib":{huge}}}"#,
            rayon::current_num_threads(),
            ids.len()
        );
    }
    Ok(())
}
