// The chat template: how a Chat turn's user text becomes model input, and
// where the model's reply ends. A deliberately small format (no Jinja):
//
//   # chat_template.txt (in the model directory, or --chat_template=PATH)
//   system={text}\n\n
//   user=User: {text}\n\nAssistant:
//   separator=\n\n
//   stop=User:
//   bos=true
//
// One `key=value` per line; `#` lines and blank lines are ignored; values
// take the escapes \n, \t, \\ and nothing else. Keys:
//   system  placed once, before the first turn of an empty session, when the
//           ChatStart has a system prompt ({text} = the system prompt).
//   user    placed for every turn ({text} = the user's message). Required,
//           and must contain {text}.
//   stop    a stop string every reply ends at (repeatable, at most 4): the
//           reply's text is cut before it, added to the turn's own stop
//           strings.
//   bos     true: the model's BOS token starts an empty session's first turn.
//
//   separator  placed before every turn of a non-empty session, so that the
//           previous reply and the next user message do not run together.
//
// The default (for a model directory without chat_template.txt), suited to
// the bundled KJV model, which knows nothing of chat: a plain dialogue
//   "<system>\n\nUser: <text>\n\nAssistant:"  ...reply...  "\n\nUser: ..."
// with the reply stopping where the model starts the next "User:" (and at
// EOS). The stop string has no newline because the KJV tokenizer (nmt_nfkc)
// turns newlines into spaces: its replies never contain one.
#ifndef LINSERVE_SERVER_CHAT_TEMPLATE_H_
#define LINSERVE_SERVER_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace linserve::server {

// The name of a model directory's template file.
inline constexpr char kChatTemplateFileName[] = "chat_template.txt";
inline constexpr int kMaxChatTemplateStopStrings = 4;

struct ChatTemplate {
  std::string system = "{text}\n\n";
  std::string user = "User: {text}\n\nAssistant:";
  std::string separator = "\n\n";
  std::vector<std::string> stop_strings = {"User:"};
  bool add_bos = true;

  // The text of one turn. `session_empty`: the session holds no token yet
  // (then the system slot is used when system_prompt is non-empty, and no
  // separator comes first).
  std::string RenderTurn(bool session_empty, absl::string_view system_prompt,
                         absl::string_view user_text) const;

  // The template in its file format (what ModelInfo.chat_template reports).
  std::string ToFileFormat() const;
};

// Parses the file format above. InvalidArgument naming `source`, the line
// and what is wrong (unknown key, bad escape, user without {text}, ...).
absl::StatusOr<ChatTemplate> ParseChatTemplate(absl::string_view text,
                                               absl::string_view source);

// The template for a server: `flag_path` if non-empty (NotFound naming it if
// it cannot be read), else model_dir/chat_template.txt if it exists, else the
// default ChatTemplate{}.
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& flag_path,
                                              const std::string& model_dir);

}  // namespace linserve::server

#endif  // LINSERVE_SERVER_CHAT_TEMPLATE_H_
