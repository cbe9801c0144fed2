//! A simulated-mixnet hub that programs in other processes join (until the `nym-stream`
//! command exists, this starts one).
//!
//! ```sh
//! cargo run --example hub -- [--listen 127.0.0.1:1977] [--preset realistic|instant|hostile] [--seed N] [--loss P]
//! ```
//!
//! Then run programs with `NYM_STREAM_NETWORK=hub:127.0.0.1:1977` (or `hub` for that
//! default address), e.g. the split echo example (`echo_server`, `echo_client`). The hub
//! runs in real time until Ctrl-C.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::SocketAddr;

use mixnet_sim::hub::{Hub, HubConfig};
use nym_stream::mixnet::SimConfig;

fn parse() -> Result<(HubConfig, String), Box<dyn Error>> {
    let mut cfg = HubConfig::new();
    let mut preset = "realistic".to_string();
    let mut seed: Option<u64> = None;
    let mut loss: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => cfg.listen = value()?.parse::<SocketAddr>()?,
            "--preset" => preset = value()?,
            "--seed" => seed = Some(value()?.parse()?),
            "--loss" => loss = Some(value()?.parse()?),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: hub [--listen ADDR] [--preset realistic|instant|hostile] [--seed N] [--loss P]"
                )
                .into())
            }
        }
    }
    let mut sim = match preset.as_str() {
        "realistic" => SimConfig::realistic(),
        "instant" => SimConfig::instant(),
        "hostile" => SimConfig::hostile(),
        other => {
            return Err(format!("unknown preset {other}: realistic, instant or hostile").into())
        }
    };
    if let Some(s) = seed {
        sim = sim.with_seed(s);
    }
    if let Some(p) = loss {
        sim.loss_probability = p;
    }
    Ok((cfg.with_sim(sim), preset))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (cfg, preset) = parse()?;
    let seed = cfg.sim.seed;
    let hub = Hub::start(cfg).await?;
    println!(
        "hub listening on {} (preset {preset}, seed {seed}); join with NYM_STREAM_NETWORK=hub:{}; Ctrl-C stops it",
        hub.local_addr(),
        hub.local_addr()
    );
    hub.run_until_ctrl_c().await?;
    Ok(())
}
