//! Starter domains: `<adjective>-<animal>-NNNN` (Zero's `generateSubdomainName`).

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "calm", "clever", "crisp", "daring", "eager", "fancy", "gentle", "happy", "jolly", "keen",
    "lively", "lucky", "mellow", "nimble", "polite", "proud", "quick", "quiet", "rapid", "shiny", "silent", "snowy",
    "sunny", "swift", "tidy", "vivid", "witty", "zesty",
];

const ANIMALS: &[&str] = &[
    "badger", "beaver", "bison", "camel", "cheetah", "crane", "dolphin", "eagle", "falcon", "ferret", "gecko", "heron",
    "ibex", "jaguar", "koala", "lemur", "lynx", "marmot", "narwhal", "otter", "panda", "puffin", "quokka", "raven",
    "salmon", "tapir", "toucan", "walrus", "wombat", "yak",
];

/// A random starter subdomain name.
pub fn generate() -> String {
    let adjective = ADJECTIVES.get(fastrand::usize(..ADJECTIVES.len())).copied().unwrap_or("calm");
    let animal = ANIMALS.get(fastrand::usize(..ANIMALS.len())).copied().unwrap_or("otter");
    format!("{adjective}-{animal}-{:04}", fastrand::u16(0..10000))
}

/// Whether `name` has the starter form.
pub fn is_starter(name: &str) -> bool {
    let mut parts = name.splitn(3, '-');
    let (Some(a), Some(b), Some(n)) = (parts.next(), parts.next(), parts.next()) else { return false };
    ADJECTIVES.contains(&a) && ANIMALS.contains(&b) && n.len() == 4 && n.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_the_starter_form() {
        for _ in 0..100 {
            let name = generate();
            assert!(is_starter(&name), "{name}");
        }
        assert!(!is_starter("calm-otter-12"));
    }
}
