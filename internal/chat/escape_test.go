package chat

import (
	"html"
	"strings"
	"testing"
	"unicode/utf8"
)

const fffd = "\uFFFD"

func TestHTMLSpecialChars(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "hello", "hello"},
		{"ampersand", "a & b", "a &amp; b"},
		{"double encode", "&amp; &lt;", "&amp;amp; &amp;lt;"},
		{"double quote", `say "hi"`, "say &quot;hi&quot;"},
		{"single quote", "it's", "it&#039;s"},
		{"tags", "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"},
		{"all five", `&"'<>`, "&amp;&quot;&#039;&lt;&gt;"},
		{"line breaks untouched", "a\r\nb\n", "a\r\nb\n"},
		{"control bytes untouched", "a\x00\x01\x7fb", "a\x00\x01\x7fb"},
		{"chinese", "你好,<世界>", "你好,&lt;世界&gt;"},
		{"two and four byte", "é😀", "é😀"},
		{"max code point", "\U0010FFFF", "\U0010FFFF"},
		{"lone continuation byte", "a\x80b", "a" + fffd + "b"},
		{"overlong two byte lead", "\xC0\xAF", fffd + fffd},
		{"0xFF", "\xFF", fffd},
		{"0xF5 lead", "\xF5\x80\x80\x80", fffd + fffd + fffd + fffd},
		{"truncated two byte at end", "a\xC3", "a" + fffd},
		{"two byte then ascii", "\xC3<", fffd + "&lt;"},
		{"two byte then non-lead non-trail", "\xC3\xFFa", fffd + "a"},
		{"two byte then lead", "\xC3\xC3\xA9", fffd + "é"},
		{"truncated three byte is one error", "\xE4\xB8", fffd},
		{"truncated three byte then ascii", "\xE4\xB8\n", fffd + "\n"},
		{"three byte bad second, then stray continuations", "\xE4<\xB8\xAD", fffd + "&lt;" + fffd + fffd},
		{"three byte non-lead third", "\xE4\xB8\xFF", fffd},
		{"three byte lead third", "\xE4\xB8\xE4\xB8\xAD", fffd + "中"},
		{"overlong three byte", "\xE0\x80\xAF", fffd},
		{"surrogate", "\xED\xA0\x80", fffd},
		{"truncated four byte", "\xF0\x9F\x98", fffd},
		{"four byte bad fourth", "\xF0\x9F\x98a", fffd + "a"},
		{"four byte non-lead fourth", "\xF0\x9F\x98\xFF", fffd},
		{"overlong four byte", "\xF0\x80\x80\x80", fffd},
		{"beyond U+10FFFF", "\xF4\x90\x80\x80", fffd},
		{"replacement char itself", fffd, fffd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := htmlSpecialChars(tt.in); got != tt.want {
				t.Errorf("htmlSpecialChars(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNL2BR(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"no break", "abc", "abc"},
		{"LF", "a\nb", "a<br />\nb"},
		{"CRLF", "a\r\nb", "a<br />\r\nb"},
		{"LFCR", "a\n\rb", "a<br />\n\rb"},
		{"lone CR", "a\rb", "a<br />\rb"},
		{"two LF", "a\n\nb", "a<br />\n<br />\nb"},
		{"two CR", "a\r\rb", "a<br />\r<br />\rb"},
		{"two CRLF", "\r\n\r\n", "<br />\r\n<br />\r\n"},
		{"LF CR LF pairs greedily", "\n\r\n", "<br />\n\r<br />\n"},
		{"trailing LF", "end\n", "end<br />\n"},
		{"leading CR", "\rstart", "<br />\rstart"},
		{"chinese", "你好\n世界", "你好<br />\n世界"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nl2br(tt.in); got != tt.want {
				t.Errorf("nl2br(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEscapeText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"seed greeting", "你好", "你好"},
		{"markup and break", "<b>hi</b>\nthere", "&lt;b&gt;hi&lt;/b&gt;<br />\nthere"},
		{"quotes and CRLF", "\"a\" & 'b'\r\nc", "&quot;a&quot; &amp; &#039;b&#039;<br />\r\nc"},
		{"invalid bytes keep the break", "\xE4\xB8\r\n\xFF", fffd + "<br />\r\n" + fffd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapeText(tt.in); got != tt.want {
				t.Errorf("escapeText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzEscapeText checks properties that hold for any text: the result is
// valid UTF-8, carries no markup but the inserted <br />, and for valid UTF-8
// input decodes back to the input.
func FuzzEscapeText(f *testing.F) {
	for _, s := range []string{"", "a<b>&\"'\r\n\n\r", "你好\r\n", "\xE4\xB8\xFF\xC0", "\xF0\x9F\x98\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := escapeText(in)
		if !utf8.ValidString(out) {
			t.Fatalf("escapeText(%q) = %q is not valid UTF-8", in, out)
		}
		stripped := strings.ReplaceAll(out, "<br />", "")
		if strings.ContainsAny(stripped, "<>\"'") {
			t.Fatalf("escapeText(%q) = %q contains markup", in, out)
		}
		if utf8.ValidString(in) {
			if back := html.UnescapeString(stripped); back != in {
				t.Fatalf("escapeText(%q) = %q decodes to %q", in, out, back)
			}
		} else if !strings.Contains(out, fffd) {
			t.Fatalf("escapeText(%q) = %q has no U+FFFD for invalid input", in, out)
		}
	})
}
