package chat

import "strings"

// escapeText returns what the seed's PHP sends as a message's data:
// nl2br(htmlspecialchars($text)) with PHP 8.1+ defaults
// (ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML401, UTF-8, double encoding).
func escapeText(text string) string {
	return nl2br(htmlSpecialChars(text))
}

// replacementChar is U+FFFD, what ENT_SUBSTITUTE puts in place of each
// invalid UTF-8 sequence.
const replacementChar = "\uFFFD"

// htmlSpecialChars is PHP's htmlspecialchars($s) with PHP 8.1+ defaults: &, ",
// ', < and > become &amp;, &quot;, &#039;, &lt; and &gt;; every invalid UTF-8
// sequence becomes one U+FFFD, cut exactly where PHP cuts it (see
// nextUTF8Char); everything else is copied unchanged.
func htmlSpecialChars(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			switch c {
			case '&':
				b.WriteString("&amp;")
			case '"':
				b.WriteString("&quot;")
			case '\'':
				b.WriteString("&#039;")
			case '<':
				b.WriteString("&lt;")
			case '>':
				b.WriteString("&gt;")
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		n, ok := nextUTF8Char(s[i:])
		if ok {
			b.WriteString(s[i : i+n])
		} else {
			b.WriteString(replacementChar)
		}
		i += n
	}
	return b.String()
}

// utf8Lead reports whether c is a single-byte character or may start a
// multi-byte sequence (PHP's utf8_lead).
func utf8Lead(c byte) bool { return c < 0x80 || (c >= 0xC2 && c <= 0xF4) }

// utf8Trail reports whether c may continue a multi-byte sequence (PHP's
// utf8_trail).
func utf8Trail(c byte) bool { return c >= 0x80 && c <= 0xBF }

// nextUTF8Char measures the character at the start of the non-empty s the
// way PHP's get_next_char (ext/standard/html.c) does for UTF-8: it returns
// the number of bytes the character or the invalid sequence takes (at least
// 1) and whether it is valid. Following UTR #36 section 3.6.1 strategy 2, an
// invalid sequence never swallows a byte that could start a character, so
// ASCII (line breaks included) always survives. The differences from
// utf8.DecodeRuneInString are deliberate: a truncated sequence is one error,
// not one per byte.
func nextUTF8Char(s string) (n int, ok bool) {
	c := s[0]
	switch {
	case c < 0x80:
		return 1, true
	case c < 0xC2: // stray continuation byte or overlong 2-byte lead
		return 1, false
	case c < 0xE0:
		if len(s) < 2 {
			return 1, false
		}
		if !utf8Trail(s[1]) {
			if utf8Lead(s[1]) {
				return 1, false
			}
			return 2, false
		}
		// A lead byte of at least 0xC2 cannot encode less than U+0080, so
		// PHP's non-shortest-form check never fires here.
		return 2, true
	case c < 0xF0:
		if len(s) < 3 || !utf8Trail(s[1]) || !utf8Trail(s[2]) {
			switch {
			case len(s) < 2 || utf8Lead(s[1]):
				return 1, false
			case len(s) < 3 || utf8Lead(s[2]):
				return 2, false
			default:
				return 3, false
			}
		}
		r := rune(c&0x0F)<<12 | rune(s[1]&0x3F)<<6 | rune(s[2]&0x3F)
		if r < 0x800 || (r >= 0xD800 && r <= 0xDFFF) { // overlong or surrogate
			return 3, false
		}
		return 3, true
	case c < 0xF5:
		if len(s) < 4 || !utf8Trail(s[1]) || !utf8Trail(s[2]) || !utf8Trail(s[3]) {
			switch {
			case len(s) < 2 || utf8Lead(s[1]):
				return 1, false
			case len(s) < 3 || utf8Lead(s[2]):
				return 2, false
			case len(s) < 4 || utf8Lead(s[3]):
				return 3, false
			default:
				return 4, false
			}
		}
		r := rune(c&0x07)<<18 | rune(s[1]&0x3F)<<12 | rune(s[2]&0x3F)<<6 | rune(s[3]&0x3F)
		if r < 0x10000 || r > 0x10FFFF { // overlong or beyond Unicode
			return 4, false
		}
		return 4, true
	default:
		return 1, false
	}
}

// nl2br is PHP's nl2br($s): it inserts "<br />" before every line break and
// keeps the break. "\r\n", "\n\r", "\n" and "\r" each count as one break.
func nl2br(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 6*strings.Count(s, "\n") + 6*strings.Count(s, "\r"))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			b.WriteString("<br />")
			if i+1 < len(s) && (s[i+1] == '\r' || s[i+1] == '\n') && s[i+1] != c {
				b.WriteByte(c)
				i++
				c = s[i]
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}
