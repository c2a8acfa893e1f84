//! `simulator`: plays smart meters. `simulator publish` sends readings to RabbitMQ;
//! `simulator generate` writes a CSV file from a synthetic profile.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use simulator::csv_source;
use simulator::feed::{Clock, Feed, Limit, Source};
use simulator::profile::{Generator, InjectedPeak, Profile};
use simulator::publisher::redact;
use simulator::{Publisher, PublisherOptions, Topology};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "simulator",
    version,
    about = "Smart meter simulator for the Energy Utility Platform",
    long_about = "Plays smart meters: publishes readings {timestamp, sensor_id, \
                  measurement_value} to RabbitMQ with publisher confirms, from CSV files or \
                  synthetic load profiles, or writes such a CSV file."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish readings to RabbitMQ.
    Publish(Box<PublishArgs>),
    /// Write readings of a synthetic profile as CSV to standard output (one value per line, or
    /// `timestamp,value` with --with-timestamps).
    Generate(GenerateArgs),
}

#[derive(clap::Args, Debug)]
struct SourceArgs {
    /// Replay this CSV file (one kWh value per line, or `timestamp,value`).
    #[arg(long, conflicts_with = "profile")]
    csv: Option<PathBuf>,

    /// Synthetic load profile: household, office or factory.
    #[arg(long, default_value = "household")]
    profile: Profile,

    /// Typical load of a synthetic meter, kW.
    #[arg(long, default_value_t = 1.5)]
    nominal_kw: f64,

    /// Inject a peak: `TIME@KW`, TIME being RFC 3339 or `+DURATION` after the start (for
    /// example `+2h@12`). Repeatable.
    #[arg(long = "peak", value_name = "TIME@KW")]
    peaks: Vec<String>,

    /// Seed of the profile's noise (default: derived from the device id).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct ClockArgs {
    /// Simulated time between two readings of a meter: `10m`, `30s`, `1h`, `500ms`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    step: Duration,

    /// Simulated time of the first reading (RFC 3339). Default: now in real time; with
    /// fast-forward or a load rate, early enough that the last reading is not in the future.
    #[arg(long)]
    start: Option<DateTime<Utc>>,

    /// Readings per device.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,

    /// Simulated time to cover, for example `7d`.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

#[derive(clap::Args, Debug)]
struct PublishArgs {
    /// Broker URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,

    /// Device (meter) to play, by its UUID as shown in the admin area. Repeatable.
    #[arg(long = "device", value_name = "UUID")]
    devices: Vec<Uuid>,

    /// TOML file mapping devices to sources (see the README); combines with --device.
    #[arg(long)]
    config: Option<PathBuf>,

    #[command(flatten)]
    source: SourceArgs,

    #[command(flatten)]
    clock: ClockArgs,

    /// Fast-forward: simulated time runs this many times faster than real time.
    #[arg(long, conflicts_with_all = ["rate", "burst"])]
    speed: Option<f64>,

    /// Load mode: this many messages per second across all devices.
    #[arg(long, conflicts_with_all = ["speed", "burst"])]
    rate: Option<f64>,

    /// Send as fast as the broker confirms.
    #[arg(long)]
    burst: bool,

    /// Most messages awaiting a confirm at once.
    #[arg(long, default_value_t = 2048)]
    window: usize,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,

    #[command(flatten)]
    topology: Topology,
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    #[command(flatten)]
    source: SourceArgs,

    #[command(flatten)]
    clock: ClockArgs,

    /// Register value of the first reading, kWh.
    #[arg(long, default_value_t = 0.0)]
    start_kwh: f64,

    /// Write `timestamp,value` lines (RFC 3339 timestamps) instead of values only.
    #[arg(long)]
    with_timestamps: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(rename = "device")]
    devices: Vec<DeviceConfig>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceConfig {
    id: Uuid,
    csv: Option<PathBuf>,
    profile: Option<String>,
    nominal_kw: Option<f64>,
    seed: Option<u64>,
    start_kwh: Option<f64>,
    #[serde(default)]
    peaks: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Publish(args) => publish(*args).await,
        Command::Generate(args) => generate(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let count = args.clock.count.or_else(|| {
        args.clock
            .duration
            .map(|d| (d.as_millis() / args.clock.step.as_millis().max(1)) as u64)
    });
    let Some(count) = count else {
        bail!("say how many readings to write with --count or --duration");
    };
    let step_ms = step_ms(args.clock.step)?;
    let start_ms = args
        .clock
        .start
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| align(now_ms() - count as i64 * step_ms, step_ms));
    let device = Uuid::nil();
    let generator = generator_for(
        device,
        args.source.profile,
        args.source.nominal_kw,
        args.source.seed,
        args.start_kwh,
        &args.source.peaks,
        start_ms,
    )?;
    let feed = Feed::new(
        vec![(device, Source::Profile(generator))],
        Clock { start_ms, step_ms },
        Limit {
            count_per_device: Some(count),
            end_ms: None,
        },
    );
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for m in feed {
        use std::io::Write;
        if args.with_timestamps {
            let at = DateTime::<Utc>::from_timestamp_millis(m.timestamp).unwrap_or_default();
            writeln!(
                out,
                "{},{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.measurement_value
            )?;
        } else {
            writeln!(out, "{}", m.measurement_value)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

enum Pace {
    Speed(f64),
    Rate(f64),
    Burst,
}

async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let step_ms = step_ms(args.clock.step)?;
    let pace = match (args.speed, args.rate, args.burst) {
        (Some(s), _, _) if !(s.is_finite() && s > 0.0) => bail!("--speed must be above 0"),
        (_, Some(r), _) if !(r.is_finite() && r > 0.0) => bail!("--rate must be above 0"),
        (Some(s), _, _) => Pace::Speed(s),
        (_, Some(r), _) => Pace::Rate(r),
        (_, _, true) => Pace::Burst,
        _ => Pace::Speed(1.0),
    };
    let realtime = matches!(pace, Pace::Speed(s) if s == 1.0);
    let span_ms = match (args.clock.count, args.clock.duration) {
        (Some(n), _) => Some(n as i64 * step_ms),
        (_, Some(d)) => Some(d.as_millis() as i64),
        _ => None,
    };
    let start_ms = match args.clock.start {
        Some(t) => t.timestamp_millis(),
        None if realtime => now_ms(),
        // Fast-forward ends about now, so no reading is in the future.
        None => align(now_ms() - span_ms.unwrap_or(7 * 24 * 3_600_000), step_ms),
    };

    let mut sources = Vec::new();
    for &device in &args.devices {
        sources.push((device, source_from_args(device, &args.source, start_ms)?));
    }
    if let Some(path) = &args.config {
        sources.extend(sources_from_file(path, &args.source, start_ms)?);
    }
    if sources.is_empty() {
        bail!("no devices: give --device UUID (repeatable) or --config FILE");
    }
    let limit = Limit {
        count_per_device: args.clock.count,
        end_ms: args.clock.duration.map(|d| start_ms + d.as_millis() as i64),
    };
    let feed = Feed::new(sources, Clock { start_ms, step_ms }, limit);
    let total = feed.len_hint();

    let mut options = PublisherOptions::new(args.amqp_url.clone(), args.topology.clone());
    options.window = args.window;
    options.reconnect_for = Duration::from_secs(30);
    let mut publisher = Publisher::connect(options)
        .await
        .with_context(|| format!("cannot start publishing to {}", redact(&args.amqp_url)))?;

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };

    let started = Instant::now();
    let real_start = tokio::time::Instant::now();
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    for (k, message) in feed.enumerate() {
        let due = match pace {
            Pace::Speed(speed) => Some(Duration::from_secs_f64(
                ((message.timestamp - start_ms).max(0) as f64 / 1000.0) / speed,
            )),
            Pace::Rate(rate) => Some(Duration::from_secs_f64(k as f64 / rate)),
            Pace::Burst => None,
        };
        if let Some(due) = due {
            let at = real_start + due;
            if at > tokio::time::Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = &mut ctrl_c => { interrupted = true; break; }
                }
            }
        }
        publisher.publish(message.to_json()).await?;
        bar.inc(1);
    }
    let stats = publisher.close().await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} · confirmed {} · returned {} · failed {} · retried {} · reconnects {} · {:.1} s · {:.0} msg/s{}",
        stats.sent,
        stats.confirmed,
        stats.returned,
        stats.failed,
        stats.retried,
        stats.reconnects,
        secs,
        stats.confirmed as f64 / secs.max(1e-9),
        if interrupted { " (interrupted)" } else { "" }
    );
    Ok(if stats.returned + stats.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn source_from_args(device: Uuid, args: &SourceArgs, start_ms: i64) -> anyhow::Result<Source> {
    Ok(match &args.csv {
        Some(path) => Source::Csv(csv_source::read(path)?),
        None => Source::Profile(generator_for(
            device,
            args.profile,
            args.nominal_kw,
            args.seed,
            0.0,
            &args.peaks,
            start_ms,
        )?),
    })
}

fn sources_from_file(
    path: &Path,
    defaults: &SourceArgs,
    start_ms: i64,
) -> anyhow::Result<Vec<(Uuid, Source)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sources = Vec::new();
    for d in file.devices {
        let source = match (&d.csv, &d.profile) {
            (Some(_), Some(_)) => bail!(
                "{}: device {} has both csv and profile; give one",
                path.display(),
                d.id
            ),
            (Some(csv), None) => Source::Csv(csv_source::read(&base.join(csv))?),
            (None, profile) => {
                let profile = match profile {
                    Some(p) => p
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("{}: {e}", path.display()))?,
                    None => defaults.profile,
                };
                Source::Profile(generator_for(
                    d.id,
                    profile,
                    d.nominal_kw.unwrap_or(defaults.nominal_kw),
                    d.seed.or(defaults.seed),
                    d.start_kwh.unwrap_or(0.0),
                    &d.peaks,
                    start_ms,
                )?)
            }
        };
        sources.push((d.id, source));
    }
    Ok(sources)
}

fn generator_for(
    device: Uuid,
    profile: Profile,
    nominal_kw: f64,
    seed: Option<u64>,
    start_kwh: f64,
    peaks: &[String],
    start_ms: i64,
) -> anyhow::Result<Box<Generator>> {
    if !(nominal_kw.is_finite() && nominal_kw >= 0.0) {
        bail!("--nominal-kw must be a number of at least 0");
    }
    let seed = seed.unwrap_or_else(|| device.as_u64_pair().0);
    let peaks = peaks
        .iter()
        .map(|p| parse_peak(p, start_ms))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Box::new(
        Generator::new(profile, nominal_kw, seed, start_kwh).with_peaks(peaks),
    ))
}

fn parse_peak(text: &str, start_ms: i64) -> anyhow::Result<InjectedPeak> {
    let Some((time, kw)) = text.split_once('@') else {
        bail!("peak {text:?}: write TIME@KW, for example +2h@12 or 2026-01-01T18:00:00Z@12");
    };
    let power_kw: f64 = kw
        .parse()
        .ok()
        .filter(|k: &f64| k.is_finite() && *k > 0.0)
        .ok_or_else(|| anyhow::anyhow!("peak {text:?}: {kw:?} is not a power in kW above 0"))?;
    let at_ms = match time.strip_prefix('+') {
        Some(offset) => {
            start_ms
                + parse_duration(offset)
                    .map_err(|e| anyhow::anyhow!("peak {text:?}: {e}"))?
                    .as_millis() as i64
        }
        None => DateTime::parse_from_rfc3339(time)
            .map_err(|_| anyhow::anyhow!("peak {text:?}: {time:?} is not an RFC 3339 time"))?
            .timestamp_millis(),
    };
    Ok(InjectedPeak { at_ms, power_kw })
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10m, 30s, 1h, 2d or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be above zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn step_ms(step: Duration) -> anyhow::Result<i64> {
    let ms = step.as_millis() as i64;
    if ms < 1 {
        bail!("--step must be at least 1ms");
    }
    Ok(ms)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn align(ms: i64, step_ms: i64) -> i64 {
    ms - ms.rem_euclid(step_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn peaks_take_offsets_or_times() {
        let p = parse_peak("+2h@12", 1_000).unwrap();
        assert_eq!(p.at_ms, 1_000 + 7_200_000);
        assert_eq!(p.power_kw, 12.0);
        assert!(parse_peak("+2h", 0).is_err());
        assert!(parse_peak("noon@5", 0).is_err());
        assert!(parse_peak("+1h@-3", 0).is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
