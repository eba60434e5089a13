//! The text the switch is configured with: a port on the command line,
//! `NAME[:KEY=VALUE,...]`, and the same keys in a `set NAME KEY=VALUE ...`
//! command on stdin.
//!
//! Keys (both directions unless prefixed `up.` host to switch, or `down.`
//! switch to host): `rate` (bits/s, suffix k, m or g: `100m`; 0 is
//! unlimited), `delay` (one way, ms), `loss` (percent of frames), `queue`
//! (ms of transmit time a frame may wait), `blackhole` (`on`/`off`).

use std::time::Duration;

use crate::link::LinkParams;

/// Applies one `KEY=VALUE` to a port's (up, down) settings.
pub fn apply(kv: &str, up: &mut LinkParams, down: &mut LinkParams) -> Result<(), String> {
    let (key, value) = kv
        .split_once('=')
        .ok_or_else(|| format!("{kv:?}: expected KEY=VALUE (e.g. delay=20)"))?;
    let (dirs, key): (&mut [&mut LinkParams], &str) = match key.split_once('.') {
        Some(("up", k)) => (&mut [up], k),
        Some(("down", k)) => (&mut [down], k),
        Some(_) => return Err(format!("{key:?}: a direction is up. or down.")),
        None => (&mut [up, down], key),
    };
    let bad = |what: &str| format!("{kv:?}: {what}");
    for p in dirs.iter_mut() {
        match key {
            "rate" => {
                p.rate_bps = parse_rate(value).ok_or_else(|| bad("rate is bits/s, e.g. 100m"))?
            }
            "delay" => p.delay = parse_ms(value).ok_or_else(|| bad("delay is ms, e.g. 20"))?,
            "queue" => p.queue = parse_ms(value).ok_or_else(|| bad("queue is ms, e.g. 100"))?,
            "loss" => {
                let pct: f64 = value
                    .parse()
                    .map_err(|_| bad("loss is a percent, e.g. 1"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(bad("loss is a percent between 0 and 100"));
                }
                p.loss_ppm = (pct * 10_000.0).round() as u32;
            }
            "blackhole" => {
                p.blackhole = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad("blackhole is on or off")),
                }
            }
            _ => return Err(bad("unknown key (rate, delay, loss, queue, blackhole)")),
        }
    }
    Ok(())
}

fn parse_rate(v: &str) -> Option<u64> {
    let (num, mul) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1_000),
        b'm' | b'M' => (&v[..v.len() - 1], 1_000_000),
        b'g' | b'G' => (&v[..v.len() - 1], 1_000_000_000),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

fn parse_ms(v: &str) -> Option<Duration> {
    let ms: f64 = v.parse().ok()?;
    (ms.is_finite() && (0.0..=3_600_000.0).contains(&ms))
        .then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// A port from the command line: `NAME[:KEY=VALUE,...]`.
pub fn parse_port(spec: &str) -> Result<(String, LinkParams, LinkParams), String> {
    let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "{spec:?}: a port name is 1 to 15 characters (an interface name)"
        ));
    }
    let (mut up, mut down) = (LinkParams::default(), LinkParams::default());
    for kv in rest.split(',').filter(|s| !s.is_empty()) {
        apply(kv, &mut up, &mut down)?;
    }
    Ok((name.to_string(), up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        let (n, up, down) = parse_port("h1:rate=100m,delay=20,up.loss=1,down.queue=50").unwrap();
        assert_eq!(n, "h1");
        assert_eq!(up.rate_bps, 100_000_000);
        assert_eq!(down.rate_bps, 100_000_000);
        assert_eq!(up.delay, Duration::from_millis(20));
        assert_eq!(down.delay, Duration::from_millis(20));
        assert_eq!((up.loss_ppm, down.loss_ppm), (10_000, 0));
        assert_eq!(down.queue, Duration::from_millis(50));
        assert_eq!(parse_port("h2").unwrap().1, LinkParams::default());
        for bad in [
            "",
            ":rate=1",
            "h:rate=fast",
            "h:loss=101",
            "h:side.rate=1",
            "h:speed=1",
            "h:rate",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_blackhole_one_way() {
        let (mut up, mut down) = (LinkParams::default(), LinkParams::default());
        apply("up.blackhole=on", &mut up, &mut down).unwrap();
        assert!(up.blackhole && !down.blackhole);
        apply("blackhole=off", &mut up, &mut down).unwrap();
        assert!(!up.blackhole);
    }
}
