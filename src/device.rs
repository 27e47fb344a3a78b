//! Choosing a burn [`Device`] at run time from a CLI value or the `BURN_DEVICE` variable.
//!
//! Accepted values: `flex`, `ndarray`, `wgpu` (the best adapter), `wgpu:N` (the `N`-th discrete
//! GPU), `cuda` and `cuda:N`, `tch` (libtorch on the CPU), `tch:cuda` and `tch:cuda:N` (libtorch
//! on a CUDA GPU). Each needs the cargo feature of the same name; a value whose backend is not
//! compiled in gives [`DeviceError::NotCompiled`], which names the feature, and a libtorch CUDA
//! device that this machine does not have gives [`DeviceError::Unavailable`].

use burn::tensor::Device;

/// The environment variable read by [`device_from_cli_or_env`].
pub const DEVICE_ENV: &str = "BURN_DEVICE";

/// A device specification could not be turned into a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The backend exists but this binary was built without its feature.
    #[error(
        "device `{spec}` needs the `{feature}` backend, which this binary was built without: \
         rebuild with `--features {feature}` (compiled backends: {compiled})"
    )]
    NotCompiled {
        /// The value that was given.
        spec: String,
        /// The cargo feature that enables it.
        feature: &'static str,
        /// The backends this binary has, comma separated.
        compiled: String,
    },
    /// The backend is compiled in but the device is not on this machine.
    #[error("device `{spec}` is not available: {reason}")]
    Unavailable {
        /// The value that was given.
        spec: String,
        /// What is missing.
        reason: String,
    },
    /// The value names no backend or has a malformed index.
    #[error(
        "device `{spec}` is not recognised: expected flex, ndarray, wgpu, wgpu:N, cuda, cuda:N, \
         tch, tch:cuda or tch:cuda:N"
    )]
    Unrecognised {
        /// The value that was given.
        spec: String,
    },
}

/// The backends compiled into this binary, in the order of [`parse_device`]'s list.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut backends = Vec::new();
    if cfg!(feature = "flex") {
        backends.push("flex");
    }
    if cfg!(feature = "ndarray") {
        backends.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        backends.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        backends.push("cuda");
    }
    if cfg!(feature = "tch") {
        backends.push("tch");
    }
    backends
}

/// Parses a device specification (case-insensitive, surrounding spaces ignored).
///
/// # Errors
/// [`DeviceError::Unrecognised`] for an unknown value or a bad index;
/// [`DeviceError::NotCompiled`] for a known backend whose feature is off.
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    let normalised = spec.trim().to_ascii_lowercase();
    if normalised == "tch" || normalised.starts_with("tch:") {
        return libtorch(spec, &normalised["tch".len()..]);
    }
    let (backend, index) = match normalised.split_once(':') {
        Some((backend, index)) => {
            let index = index
                .parse::<usize>()
                .map_err(|_| DeviceError::Unrecognised { spec: spec.to_string() })?;
            (backend, Some(index))
        }
        None => (normalised.as_str(), None),
    };
    let not_compiled = |feature: &'static str| DeviceError::NotCompiled {
        spec: spec.to_string(),
        feature,
        compiled: compiled_backends().join(", "),
    };
    match (backend, index) {
        ("flex", None) => flex().ok_or_else(|| not_compiled("flex")),
        ("ndarray", None) => ndarray().ok_or_else(|| not_compiled("ndarray")),
        ("wgpu", index) => wgpu(index).ok_or_else(|| not_compiled("wgpu")),
        ("cuda", index) => cuda(index).ok_or_else(|| not_compiled("cuda")),
        _ => Err(DeviceError::Unrecognised { spec: spec.to_string() }),
    }
}

/// The device named by `cli` if given, else by `BURN_DEVICE` if set, else `flex`.
///
/// # Errors
/// As [`parse_device`].
pub fn device_from_cli_or_env(cli: Option<&str>) -> Result<Device, DeviceError> {
    match (cli, std::env::var(DEVICE_ENV)) {
        (Some(spec), _) => parse_device(spec),
        (None, Ok(spec)) if !spec.trim().is_empty() => parse_device(&spec),
        _ => parse_device("flex"),
    }
}

/// The backends a benchmark compares: those named in `BURN_DEVICE` (comma separated, e.g.
/// `flex,wgpu`), else every backend compiled in. Criterion owns the command line, so benches
/// take their devices from the environment.
///
/// # Errors
/// As [`parse_device`], for the first value that does not name a compiled backend.
pub fn bench_backends() -> Result<Vec<String>, DeviceError> {
    match std::env::var(DEVICE_ENV) {
        Ok(list) if !list.trim().is_empty() => backend_list(&list),
        _ => Ok(compiled_backends().into_iter().map(String::from).collect()),
    }
}

/// Splits and checks a comma-separated list of device specifications.
fn backend_list(list: &str) -> Result<Vec<String>, DeviceError> {
    list.split(',')
        .map(|spec| parse_device(spec).map(|_| spec.trim().to_ascii_lowercase()))
        .collect()
}

fn flex() -> Option<Device> {
    #[cfg(feature = "flex")]
    return Some(Device::flex());
    #[cfg(not(feature = "flex"))]
    None
}

fn ndarray() -> Option<Device> {
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    return Some(Device::ndarray());
    #[cfg(not(feature = "ndarray"))]
    None
}

fn wgpu(index: Option<usize>) -> Option<Device> {
    #[cfg(feature = "wgpu")]
    {
        use burn::tensor::DeviceKind;
        let kind = index.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu);
        return Some(Device::wgpu(kind));
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = index;
        None
    }
}

fn cuda(index: Option<usize>) -> Option<Device> {
    #[cfg(feature = "cuda")]
    return Some(Device::cuda(index.map_or(burn::tensor::DeviceIndex::Default, Into::into)));
    #[cfg(not(feature = "cuda"))]
    {
        let _ = index;
        None
    }
}

/// `tch` (`rest` empty), `tch:cuda` or `tch:cuda:N`.
fn libtorch(spec: &str, rest: &str) -> Result<Device, DeviceError> {
    let unrecognised = || DeviceError::Unrecognised { spec: spec.to_string() };
    let cuda_index = match rest {
        "" => None,
        ":cuda" => Some(0),
        _ => Some(
            rest.strip_prefix(":cuda:")
                .and_then(|index| index.parse::<usize>().ok())
                .ok_or_else(unrecognised)?,
        ),
    };
    // burn marks its libtorch backend deprecated in favour of CubeCL's, whose CUDA build cannot
    // be had offline; libtorch from the PyPI wheel is this project's route to PyTorch's kernels.
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    {
        let Some(index) = cuda_index else { return Ok(Device::libtorch()) };
        // libtorch aborts the process on a CUDA call without a device: ask first.
        let available = if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 };
        if i64::try_from(index).is_ok_and(|index| index < available) {
            Ok(Device::libtorch_cuda(index))
        } else {
            Err(DeviceError::Unavailable {
                spec: spec.to_string(),
                reason: format!(
                    "libtorch sees {available} CUDA device(s) (no GPU, no driver, or a CPU-only \
                     libtorch); use `tch` for libtorch on the CPU"
                ),
            })
        }
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = cuda_index;
        Err(DeviceError::NotCompiled {
            spec: spec.to_string(),
            feature: "tch",
            compiled: compiled_backends().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_values_and_rejects_others() {
        #[cfg(feature = "flex")]
        assert!(parse_device(" FLEX ").is_ok());
        for bad in ["tpu", "cuda:x", "flex:0", "", "tch:0", "tch:cuda:x", "tch:cudax", "tchx"] {
            assert!(matches!(parse_device(bad), Err(DeviceError::Unrecognised { .. })), "{bad}");
        }
    }

    #[test]
    #[cfg(feature = "flex")]
    fn bench_lists_are_checked_entry_by_entry() {
        assert_eq!(backend_list(" flex , FLEX").unwrap(), vec!["flex", "flex"]);
        assert!(matches!(backend_list("flex,tpu"), Err(DeviceError::Unrecognised { .. })));
    }

    #[test]
    fn missing_backends_name_their_feature() {
        #[cfg(not(feature = "cuda"))]
        {
            let err = parse_device("cuda:1").unwrap_err();
            assert!(matches!(err, DeviceError::NotCompiled { feature: "cuda", .. }));
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
        #[cfg(not(feature = "wgpu"))]
        assert!(matches!(
            parse_device("wgpu"),
            Err(DeviceError::NotCompiled { feature: "wgpu", .. })
        ));
        #[cfg(not(feature = "tch"))]
        assert!(matches!(
            parse_device("tch:cuda:1"),
            Err(DeviceError::NotCompiled { feature: "tch", .. })
        ));
    }

    #[test]
    #[cfg(feature = "tch")]
    fn libtorch_cuda_without_that_device_is_an_error_not_a_crash() {
        assert!(parse_device("tch").is_ok());
        // No machine has a millionth GPU.
        let err = parse_device("tch:cuda:999999").unwrap_err();
        assert!(matches!(err, DeviceError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("CUDA device"), "{err}");
    }
}
