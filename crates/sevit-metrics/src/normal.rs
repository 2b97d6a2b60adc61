//! The standard normal distribution: CDF, two-sided p-value and quantile.
//!
//! The CDF uses `erfc` from the `libm` crate (a port of musl's, accurate to about 1 ulp), so
//! tails keep their relative precision (`normal_cdf(-30.0)` is about 5e-198, not 0). The quantile
//! is Wichura's algorithm AS 241 (`PPND16`, Applied Statistics 37(3), 1988), accurate to about
//! 1e-16 relative, which is what R's `qnorm` uses too.

use crate::error::MetricsError;

const SQRT_2: f64 = std::f64::consts::SQRT_2;

/// `P(Z <= x)` for a standard normal `Z`.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / SQRT_2)
}

/// `P(Z > x)` for a standard normal `Z` (the upper tail, precise for large `x`).
pub fn normal_sf(x: f64) -> f64 {
    0.5 * libm::erfc(x / SQRT_2)
}

/// Two-sided p-value of a z statistic: `P(|Z| >= |z|) = erfc(|z| / sqrt 2)`.
///
/// NaN in gives NaN out.
pub fn two_sided_p(z: f64) -> f64 {
    libm::erfc(z.abs() / SQRT_2)
}

/// The `p`-quantile of the standard normal (`Φ⁻¹(p)`), for `0 < p < 1`; `-inf`/`+inf` at 0/1.
///
/// # Errors
/// [`MetricsError::InvalidParameter`] when `p` is NaN or outside `[0, 1]`.
pub fn normal_quantile(p: f64) -> Result<f64, MetricsError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(MetricsError::invalid(
            "p",
            p,
            "a probability in [0, 1] is required",
        ));
    }
    if p == 0.0 {
        return Ok(f64::NEG_INFINITY);
    }
    if p == 1.0 {
        return Ok(f64::INFINITY);
    }
    Ok(ppnd16(p))
}

/// The two-sided critical value for a confidence `level` in (0, 1): `Φ⁻¹((1 + level) / 2)`
/// (1.959963984540054 for 0.95).
///
/// # Errors
/// [`MetricsError::InvalidParameter`] unless `0 < level < 1`.
pub fn z_critical(level: f64) -> Result<f64, MetricsError> {
    check_level(level)?;
    normal_quantile(0.5 + level / 2.0)
}

/// Checks a confidence level: it must lie strictly between 0 and 1.
pub(crate) fn check_level(level: f64) -> Result<(), MetricsError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(MetricsError::invalid(
            "level",
            level,
            "a confidence level strictly between 0 and 1 is required",
        ))
    }
}

/// Wichura's AS 241 for 0 < p < 1.
#[allow(clippy::excessive_precision)]
fn ppnd16(p: f64) -> f64 {
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q
            * (((((((2.5090809287301226727e3 * r + 3.3430575583588128105e4) * r
                + 6.7265770927008700853e4)
                * r
                + 4.5921953931549871457e4)
                * r
                + 1.3731693765509461125e4)
                * r
                + 1.9715909503065514427e3)
                * r
                + 1.3314166789178437745e2)
                * r
                + 3.3871328727963666080e0)
            / (((((((5.2264952788528545610e3 * r + 2.8729085735721942674e4) * r
                + 3.9307895800092710610e4)
                * r
                + 2.1213794301586595867e4)
                * r
                + 5.3941960214247511077e3)
                * r
                + 6.8718700749205790830e2)
                * r
                + 4.2313330701600911252e1)
                * r
                + 1.0);
    }
    let mut r = if q < 0.0 { p } else { 1.0 - p };
    r = (-r.ln()).sqrt();
    let val = if r <= 5.0 {
        r -= 1.6;
        (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r
            + 2.41780725177450611770e-1)
            * r
            + 1.27045825245236838258e0)
            * r
            + 3.64784832476320460504e0)
            * r
            + 5.76949722146069140550e0)
            * r
            + 4.63033784615654529590e0)
            * r
            + 1.42343711074968357734e0)
            / (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r
                + 1.51986665636164571966e-2)
                * r
                + 1.48103976427480074590e-1)
                * r
                + 6.89767334985100004550e-1)
                * r
                + 1.67638483018380384940e0)
                * r
                + 2.05319162663775882187e0)
                * r
                + 1.0)
    } else {
        r -= 5.0;
        (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r
            + 1.24266094738807843860e-3)
            * r
            + 2.65321895265761230930e-2)
            * r
            + 2.96560571828504891230e-1)
            * r
            + 1.78482653991729133580e0)
            * r
            + 5.46378491116411436990e0)
            * r
            + 6.65790464350110377720e0)
            / (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r
                + 1.84631831751005468180e-5)
                * r
                + 7.86869131145613259100e-4)
                * r
                + 1.48753612908506148525e-2)
                * r
                + 1.36929880922735805310e-1)
                * r
                + 5.99832206555887937690e-1)
                * r
                + 1.0)
    };
    if q < 0.0 {
        -val
    } else {
        val
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-16);
        // Reference values from R: pnorm(1.96), pnorm(-3), pnorm(-10).
        assert!((normal_cdf(1.96) - 0.9750021048517795).abs() < 1e-15);
        assert!((normal_cdf(-3.0) - 0.0013498980316300946).abs() < 1e-17);
        assert!((normal_cdf(-10.0) / 7.619853024160527e-24 - 1.0).abs() < 1e-12);
        assert!((normal_sf(10.0) / 7.619853024160527e-24 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn two_sided_p_known_values() {
        assert!((two_sided_p(1.959963984540054) - 0.05).abs() < 1e-15);
        assert!((two_sided_p(-1.959963984540054) - 0.05).abs() < 1e-15);
        assert_eq!(two_sided_p(0.0), 1.0);
        assert!(two_sided_p(f64::NAN).is_nan());
    }

    #[test]
    fn quantile_known_values() {
        assert!((normal_quantile(0.975).unwrap() - 1.959963984540054).abs() < 1e-15);
        assert!((normal_quantile(0.5).unwrap()).abs() < 1e-16);
        // qnorm(1e-10) in R.
        assert!((normal_quantile(1e-10).unwrap() + 6.361340902404056).abs() < 1e-12);
        assert!((normal_quantile(0.9).unwrap() - 1.2815515655446004).abs() < 1e-15);
        assert_eq!(normal_quantile(0.0).unwrap(), f64::NEG_INFINITY);
        assert!(normal_quantile(1.5).is_err());
        assert!(normal_quantile(f64::NAN).is_err());
    }

    #[test]
    fn quantile_inverts_cdf() {
        for i in 1..1000 {
            let p = i as f64 / 1000.0;
            let x = normal_quantile(p).unwrap();
            assert!((normal_cdf(x) - p).abs() < 1e-14, "p={p}");
        }
    }

    #[test]
    fn z_critical_checks_level() {
        assert!((z_critical(0.95).unwrap() - 1.959963984540054).abs() < 1e-15);
        assert!(z_critical(1.0).is_err());
        assert!(z_critical(0.0).is_err());
        assert!(z_critical(f64::NAN).is_err());
    }
}
