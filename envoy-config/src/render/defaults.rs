//! The `ambassador` Module's defaults, given to the Mappings without their
//! own before anything renders: every output sees the same Mappings.

use std::borrow::Cow;

use crate::resources::Resources;

/// `resources` with the Module's defaults given to the Mappings that set
/// none of their own (borrowed as they are without a Module).
pub(super) fn with_defaults(resources: &Resources) -> Cow<'_, Resources> {
    let Some(m) = &resources.module else {
        return Cow::Borrowed(resources);
    };
    if m.cors.is_none() && m.retry_policy.is_none() && m.circuit_breaker.is_none() {
        return Cow::Borrowed(resources);
    }
    let mut out = resources.clone();
    for mapping in &mut out.mappings {
        if mapping.cors.is_none() {
            mapping.cors.clone_from(&m.cors);
        }
        if mapping.retry_policy.is_none() {
            mapping.retry_policy.clone_from(&m.retry_policy);
        }
        if mapping.circuit_breaker.is_none() {
            mapping.circuit_breaker.clone_from(&m.circuit_breaker);
        }
    }
    Cow::Owned(out)
}
