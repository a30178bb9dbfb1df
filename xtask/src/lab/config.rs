//! The lab file: its form and the checks of its names and addresses.

use super::*;

/// A parsed lab file.
#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    /// The lab's name (the file's stem).
    pub name: String,
    /// How long to wait for the machines (None: until Ctrl-C).
    pub timeout: Option<Duration>,
    /// `skas` or `tt`.
    pub hal: String,
    /// Switch names.
    pub switches: Vec<String>,
    /// Machines, in start order.
    pub machines: Vec<Machine>,
}

/// One guest of a lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Host name and log name.
    pub name: String,
    /// Its interfaces, eth0 first.
    pub interfaces: Vec<Iface>,
    /// Commands for `/bin/sh -c`, or None for an interactive `/bin/sh`.
    pub script: Option<String>,
    /// Whether the lab waits for it to finish (false: a service, stopped at
    /// the end).
    pub wait: bool,
    /// Guest memory (`--mem`).
    pub mem: String,
}

/// One interface of a machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Iface {
    /// Plugged into a lab switch.
    Switch {
        switch: String,
        ip: Option<String>,
        gw: Option<String>,
        mac: Option<String>,
    },
    /// A raw `--net` value.
    Spec(String),
}

pub(super) fn check_name(what: &str, n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 32
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{what} name `{n}`: use 1 to 32 letters, digits, - or _"
        ));
    }
    Ok(())
}

pub(super) fn check_ipv4(s: &str, cidr: bool) -> Result<(), String> {
    let (a, n) = match s.split_once('/') {
        Some((a, n)) if cidr => (a, Some(n)),
        Some(_) => return Err(format!("`{s}`: expected an address without /N")),
        None => (s, None),
    };
    if a.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("`{s}` is not an IPv4 address"));
    }
    if let Some(n) = n {
        match n.parse::<u8>() {
            Ok(n) if n <= 32 => {}
            _ => return Err(format!("`{s}`: the prefix length must be 0 to 32")),
        }
    }
    Ok(())
}

/// Parse a lab file's text; `name` is the lab's name.
pub fn parse_lab(name: &str, text: &str) -> Result<Lab, String> {
    let t: toml::Table = text
        .parse()
        // toml's message points at the line and column over several lines:
        // keep them, indented under the file name the caller prints.
        .map_err(|e: toml::de::Error| e.to_string().trim().replace('\n', "\n    "))?;
    for k in t.keys() {
        if !["timeout", "hal", "switch", "machine"].contains(&k.as_str()) {
            return Err(format!(
                "unknown key `{k}` (expected timeout, hal, [[switch]], [[machine]])"
            ));
        }
    }
    let timeout = match t.get("timeout") {
        None => Some(Duration::from_secs(120)),
        Some(v) => {
            let s = v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .ok_or("timeout: expected seconds")?;
            if s <= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(s))
            }
        }
    };
    let hal = match t.get("hal") {
        None => "skas".to_string(),
        Some(v) => match v.as_str() {
            Some(h @ ("skas" | "tt")) => h.to_string(),
            _ => return Err("hal: expected \"skas\" or \"tt\"".into()),
        },
    };
    let tables = |key: &str| -> Result<Vec<toml::Table>, String> {
        match t.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_table()
                        .cloned()
                        .ok_or_else(|| format!("[[{key}]]: expected tables"))
                })
                .collect(),
            Some(_) => Err(format!("`{key}`: expected [[{key}]] tables")),
        }
    };
    let str_of = |tab: &toml::Table, k: &str, ctx: &str| -> Result<Option<String>, String> {
        match tab.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| format!("{ctx}: `{k}` must be a string")),
        }
    };
    let mut switches = Vec::new();
    for s in tables("switch")? {
        let n = str_of(&s, "name", "[[switch]]")?.ok_or("[[switch]]: needs a name")?;
        check_name("switch", &n)?;
        if let Some(k) = s.keys().find(|k| *k != "name") {
            return Err(format!("switch {n}: unknown key `{k}`"));
        }
        if switches.contains(&n) {
            return Err(format!("switch {n} is defined twice"));
        }
        switches.push(n);
    }
    let mut machines: Vec<Machine> = Vec::new();
    for m in tables("machine")? {
        let name = str_of(&m, "name", "[[machine]]")?.ok_or("[[machine]]: needs a name")?;
        check_name("machine", &name)?;
        let ctx = format!("machine {name}");
        if machines.iter().any(|x| x.name == name) {
            return Err(format!("{ctx} is defined twice"));
        }
        if let Some(k) = m
            .keys()
            .find(|k| !["name", "interfaces", "script", "wait", "mem"].contains(&k.as_str()))
        {
            return Err(format!("{ctx}: unknown key `{k}`"));
        }
        let wait = match m.get("wait") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("{ctx}: `wait` must be true or false"))?,
        };
        let mem = str_of(&m, "mem", &ctx)?.unwrap_or_else(|| "128M".into());
        let script = str_of(&m, "script", &ctx)?;
        let mut interfaces = Vec::new();
        let list = match m.get("interfaces") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a.clone(),
            Some(_) => return Err(format!("{ctx}: `interfaces` must be an array of tables")),
        };
        for (i, v) in list.iter().enumerate() {
            let ictx = format!("{ctx}, interface {i}");
            let it = v
                .as_table()
                .ok_or_else(|| format!("{ictx}: expected a table"))?;
            if let Some(k) = it
                .keys()
                .find(|k| !["switch", "ip", "gw", "mac", "net"].contains(&k.as_str()))
            {
                return Err(format!("{ictx}: unknown key `{k}`"));
            }
            if let Some(spec) = str_of(it, "net", &ictx)? {
                if it.len() != 1 {
                    return Err(format!(
                        "{ictx}: `net` stands alone (put ip=, gw= inside the spec)"
                    ));
                }
                interfaces.push(Iface::Spec(spec));
                continue;
            }
            let switch = str_of(it, "switch", &ictx)?
                .ok_or_else(|| format!("{ictx}: needs `switch` or `net`"))?;
            if !switches.contains(&switch) {
                return Err(format!("{ictx}: no switch named {switch}"));
            }
            let ip = str_of(it, "ip", &ictx)?;
            let gw = str_of(it, "gw", &ictx)?;
            let mac = str_of(it, "mac", &ictx)?;
            if let Some(ip) = &ip {
                check_ipv4(ip, true).map_err(|e| format!("{ictx}: ip {e}"))?;
            }
            if let Some(gw) = &gw {
                check_ipv4(gw, false).map_err(|e| format!("{ictx}: gw {e}"))?;
            }
            interfaces.push(Iface::Switch {
                switch,
                ip,
                gw,
                mac,
            });
        }
        machines.push(Machine {
            name,
            interfaces,
            script,
            wait,
            mem,
        });
    }
    if machines.is_empty() {
        return Err("no [[machine]]".into());
    }
    Ok(Lab {
        name: name.to_string(),
        timeout,
        hal,
        switches,
        machines,
    })
}
