//! Prints the CaptureSession CRD as YAML.
//!
//! Run: `cargo run -p crds --bin crdgen > crds/capturesession.yaml`
fn main() {
    print!("{}", crds::crd_yaml());
}
