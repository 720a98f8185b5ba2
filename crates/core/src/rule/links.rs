//! Link detection (SPEC §2 "Rule"): stream URLs found in text, classified by
//! platform, with the channel and, where the URL names one, the video.
//!
//! A URL is any `http://` or `https://` run of non-space characters, or a
//! bare known platform host (`twitch.tv/…`, `www.youtube.com/…`). Trailing
//! punctuation that usually ends a sentence (`.,;:!?)]}>"'`) is not part of
//! it. Hosts are compared without `www.`, `m.` and `mobile.`.

use serde::{Deserialize, Serialize};

/// A platform a link belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// twitch.tv
    Twitch,
    /// youtube.com, youtu.be
    Youtube,
    /// kick.com
    Kick,
    /// facebook.com, fb.watch
    Facebook,
    /// tiktok.com
    Tiktok,
    /// instagram.com
    Instagram,
    /// x.com, twitter.com
    X,
    /// Any other site.
    Other,
}

impl Platform {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twitch => "twitch",
            Self::Youtube => "youtube",
            Self::Kick => "kick",
            Self::Facebook => "facebook",
            Self::Tiktok => "tiktok",
            Self::Instagram => "instagram",
            Self::X => "x",
            Self::Other => "other",
        }
    }
}

/// One link found in text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Its platform.
    pub platform: Platform,
    /// The channel, user or page (for `other`, the host); `None` when the
    /// URL names only a video or post.
    pub channel: Option<String>,
    /// The video, clip or post when the URL names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_id: Option<String>,
    /// The URL as written (with `https://` added to a bare host).
    pub url: String,
}

impl Link {
    /// The registry key: `platform:channel`, or `platform:video` when the
    /// URL names no channel — always a valid state key: a handle's `@` is
    /// dropped, any other character outside `[A-Za-z0-9_.:-]` becomes `-`,
    /// and it is cut at 128 bytes.
    pub fn key(&self) -> String {
        let id = self
            .channel
            .as_deref()
            .or(self.video_id.as_deref())
            .unwrap_or_default();
        let id = id.trim_start_matches('@');
        let mut key: String = format!("{}:{id}", self.platform.as_str())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        key.truncate(crate::name::MAX_ID_LEN);
        key
    }
}

const BARE_HOSTS: &[&str] = &[
    "twitch.tv/",
    "www.twitch.tv/",
    "youtube.com/",
    "www.youtube.com/",
    "youtu.be/",
    "kick.com/",
    "tiktok.com/",
    "www.tiktok.com/",
];

/// Every link in `text`, in order, each registry key once.
pub fn find(text: &str) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == '<' || c == '"') {
        let word = word.trim_start_matches(['(', '[', '{', '\'']);
        let lower = word.to_ascii_lowercase();
        let url = if lower.starts_with("http://") || lower.starts_with("https://") {
            word.to_owned()
        } else if BARE_HOSTS.iter().any(|h| lower.starts_with(h)) {
            format!("https://{word}")
        } else {
            continue;
        };
        let url = url
            .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '>', '"', '\''])
            .to_owned();
        if let Some(link) = classify(&url)
            && !out.iter().any(|l| l.key() == link.key())
        {
            out.push(link);
        }
    }
    out
}

/// Classifies one absolute http(s) URL; `None` when it has no host.
pub fn classify(url: &str) -> Option<Link> {
    let rest = url.split_once("://")?.1;
    let (host, path_query) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host = host
        .rsplit('@')
        .next()?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    if host.is_empty() || !host.contains('.') {
        return None;
    }
    let host = ["www.", "m.", "mobile.", "vm.", "clips."]
        .iter()
        .fold(host.as_str(), |h, p| h.strip_prefix(p).unwrap_or(h))
        .to_owned();
    let (path, query) = path_query
        .split_once('?')
        .map_or((path_query, ""), |(p, q)| (p, q));
    let path = path.split('#').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.split('#').next().unwrap_or(v).to_owned())
    };
    let seg = |i: usize| segs.get(i).map(|s| (*s).to_owned());
    let (platform, channel, video) = match host.as_str() {
        "twitch.tv" if url.contains("clips.twitch.tv") => (Platform::Twitch, None, Some(seg(0)?)),
        "twitch.tv" => match segs.as_slice() {
            ["videos", id, ..] => (Platform::Twitch, None, Some((*id).to_owned())),
            [ch, "clip", id, ..] => (
                Platform::Twitch,
                Some(ch.to_lowercase()),
                Some((*id).to_owned()),
            ),
            [ch, ..] => (Platform::Twitch, Some(ch.to_lowercase()), None),
            [] => return None,
        },
        "youtu.be" => (Platform::Youtube, None, Some(seg(0)?)),
        "youtube.com" => match segs.as_slice() {
            ["watch", ..] => (Platform::Youtube, None, Some(param("v")?)),
            ["live" | "shorts" | "embed", id, ..] => {
                (Platform::Youtube, None, Some((*id).to_owned()))
            }
            ["channel" | "c" | "user", ch, ..] => (Platform::Youtube, Some((*ch).to_owned()), None),
            [ch, ..] if ch.starts_with('@') => (Platform::Youtube, Some(ch.to_lowercase()), None),
            _ => return None,
        },
        "kick.com" => match segs.as_slice() {
            [ch, "videos" | "clips", id, ..] => (
                Platform::Kick,
                Some(ch.to_lowercase()),
                Some((*id).to_owned()),
            ),
            [ch, ..] => (Platform::Kick, Some(ch.to_lowercase()), None),
            [] => return None,
        },
        "facebook.com" | "fb.watch" | "fb.com" => match segs.as_slice() {
            _ if host == "fb.watch" => (Platform::Facebook, None, Some(seg(0)?)),
            ["watch", ..] => (Platform::Facebook, None, Some(param("v")?)),
            [page, "videos", id, ..] => (
                Platform::Facebook,
                Some(page.to_lowercase()),
                Some((*id).to_owned()),
            ),
            [page, ..] => (Platform::Facebook, Some(page.to_lowercase()), None),
            [] => return None,
        },
        "tiktok.com" => match segs.as_slice() {
            [user, "video", id, ..] if user.starts_with('@') => (
                Platform::Tiktok,
                Some(user.to_lowercase()),
                Some((*id).to_owned()),
            ),
            [user, ..] if user.starts_with('@') => {
                (Platform::Tiktok, Some(user.to_lowercase()), None)
            }
            [code, ..] => (Platform::Tiktok, None, Some((*code).to_owned())),
            [] => return None,
        },
        "instagram.com" => match segs.as_slice() {
            ["p" | "reel" | "tv", id, ..] => (Platform::Instagram, None, Some((*id).to_owned())),
            [user, ..] => (Platform::Instagram, Some(user.to_lowercase()), None),
            [] => return None,
        },
        "x.com" | "twitter.com" => match segs.as_slice() {
            ["i", "broadcasts", id, ..] => (Platform::X, None, Some((*id).to_owned())),
            [user, "status", id, ..] => (
                Platform::X,
                Some(user.to_lowercase()),
                Some((*id).to_owned()),
            ),
            [user, ..] => (Platform::X, Some(user.to_lowercase()), None),
            [] => return None,
        },
        _ => (Platform::Other, Some(host.clone()), None),
    };
    Some(Link {
        platform,
        channel,
        video_id: video,
        url: url.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(url: &str) -> (Platform, Option<String>, Option<String>) {
        let l = classify(url).unwrap_or_else(|| panic!("{url} is a link"));
        (l.platform, l.channel, l.video_id)
    }

    #[test]
    fn classifies_each_platform() {
        let cases: &[(&str, Platform, Option<&str>, Option<&str>)] = &[
            (
                "https://www.twitch.tv/Shroud",
                Platform::Twitch,
                Some("shroud"),
                None,
            ),
            (
                "https://twitch.tv/videos/123",
                Platform::Twitch,
                None,
                Some("123"),
            ),
            (
                "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=1",
                Platform::Youtube,
                None,
                Some("dQw4w9WgXcQ"),
            ),
            (
                "https://youtu.be/dQw4w9WgXcQ",
                Platform::Youtube,
                None,
                Some("dQw4w9WgXcQ"),
            ),
            (
                "https://youtube.com/live/abc123",
                Platform::Youtube,
                None,
                Some("abc123"),
            ),
            (
                "https://www.youtube.com/@LofiGirl",
                Platform::Youtube,
                Some("@lofigirl"),
                None,
            ),
            ("https://kick.com/xqc", Platform::Kick, Some("xqc"), None),
            (
                "https://www.facebook.com/esl/videos/9876",
                Platform::Facebook,
                Some("esl"),
                Some("9876"),
            ),
            (
                "https://fb.watch/abcD1/",
                Platform::Facebook,
                None,
                Some("abcD1"),
            ),
            (
                "https://www.tiktok.com/@caster/live",
                Platform::Tiktok,
                Some("@caster"),
                None,
            ),
            (
                "https://www.tiktok.com/@caster/video/7123",
                Platform::Tiktok,
                Some("@caster"),
                Some("7123"),
            ),
            (
                "https://www.instagram.com/teamliquid/live/",
                Platform::Instagram,
                Some("teamliquid"),
                None,
            ),
            (
                "https://instagram.com/p/Cx1/",
                Platform::Instagram,
                None,
                Some("Cx1"),
            ),
            (
                "https://x.com/i/broadcasts/1Yp",
                Platform::X,
                None,
                Some("1Yp"),
            ),
            (
                "https://twitter.com/ESL/status/42",
                Platform::X,
                Some("esl"),
                Some("42"),
            ),
            (
                "http://example.org/stream",
                Platform::Other,
                Some("example.org"),
                None,
            ),
        ];
        for (url, platform, channel, video) in cases {
            assert_eq!(
                one(url),
                (
                    *platform,
                    channel.map(str::to_owned),
                    video.map(str::to_owned)
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn finds_links_in_chat_text() {
        let links = find(
            "live now: twitch.tv/ana_plays! also (https://youtu.be/xyz), \
             https://youtu.be/xyz again and <https://kick.com/bob>.",
        );
        let keys: Vec<String> = links.iter().map(Link::key).collect();
        assert_eq!(keys, ["twitch:ana_plays", "youtube:xyz", "kick:bob"]);
        assert_eq!(links[0].url, "https://twitch.tv/ana_plays");
        assert_eq!(links[1].video_id.as_deref(), Some("xyz"));
    }

    #[test]
    fn keys_are_valid_state_keys() {
        let urls = [
            "https://www.tiktok.com/@dee.streams/live",
            "https://www.youtube.com/@LofiGirl",
            "https://www.facebook.com/Team%20Liquid/",
            "https://example.org/a",
            "https://kick.com/über_streamer",
        ];
        let keys: Vec<String> = urls
            .iter()
            .map(|u| classify(u).expect("a link").key())
            .collect();
        assert_eq!(keys[0], "tiktok:dee.streams");
        assert_eq!(keys[1], "youtube:lofigirl");
        for k in &keys {
            assert!(crate::state::is_key(k), "{k}");
        }
        let long = format!("https://kick.com/{}", "a".repeat(300));
        assert!(crate::state::is_key(
            &classify(&long).expect("a link").key()
        ));
    }

    #[test]
    fn ignores_what_is_not_a_link() {
        assert!(find("no links here, just http:// and https://x").is_empty());
        assert!(find("twitch is great; youtube.com").is_empty());
        assert!(classify("https://www.youtube.com/").is_none());
    }
}
