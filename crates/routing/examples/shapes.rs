//! The route tables of benchmark B3, shared by the criterion bench and the instruction counter.

use routing::{Builder, Options, PathRule, RouteTable};

pub const SHAPES: [&str; 3] = ["one_host_per_route", "one_host_many_prefixes", "wildcard_hosts"];

/// A table of `routes` routes of the given shape, and the authority and path of a request that
/// selects the route in the middle (`routes / 2`).
pub fn build(shape: &str, routes: usize) -> (RouteTable<usize>, String, String) {
    let mut builder = Builder::new(Options::default());
    for i in 0..routes {
        let (host, rule) = match shape {
            "one_host_per_route" => (format!("app{i}.corp.example.com"), PathRule::Prefix("/".to_owned())),
            "one_host_many_prefixes" => ("apps.corp.example.com".to_owned(), PathRule::Prefix(format!("/app{i}/"))),
            _ => (format!("*.team{i}.example.com"), PathRule::Prefix("/".to_owned())),
        };
        builder.add(&host, rule, i).ok();
    }
    let middle = routes / 2;
    let (authority, path) = match shape {
        "one_host_per_route" => (format!("app{middle}.corp.example.com"), "/dashboard/settings".to_owned()),
        "one_host_many_prefixes" => ("apps.corp.example.com".to_owned(), format!("/app{middle}/dashboard")),
        _ => (format!("web.team{middle}.example.com"), "/dashboard/settings".to_owned()),
    };
    (builder.build(), authority, path)
}

#[allow(dead_code, reason = "the bench includes this file for `build` only")]
fn main() {
    // `lookup_repeatedly SHAPE ROUTES N`: builds the table, then looks the request up N times, so
    // that callgrind can count instructions per lookup: (I(N) - I(1)) / (N - 1).
    let args: Vec<String> = std::env::args().collect();
    let (Some(shape), Some(routes), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: shapes SHAPE ROUTES N");
        std::process::exit(1);
    };
    let (routes, n): (usize, usize) = (routes.parse().unwrap_or(0), n.parse().unwrap_or(0));
    let (table, authority, path) = build(shape, routes);
    let request = routing::Request { authority: &authority, path: &path, connect: false };
    let mut found = 0;
    for _ in 0..n {
        found += std::hint::black_box(&table).lookup(std::hint::black_box(&request)).map_or(0, |m| *m.value);
    }
    println!("{found}");
}
