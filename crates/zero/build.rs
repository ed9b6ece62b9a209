//! Generates the Connect service (client and server) from `proto/connect.proto` with the protoc
//! that protoc-bin-vendored ships, so that building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    println!("cargo:rerun-if-changed=proto/connect.proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let include = include.to_str().ok_or("the protoc include path is not UTF-8")?;
    tonic_prost_build::configure().compile_with_config(config, &["proto/connect.proto"], &["proto", include])?;
    Ok(())
}
