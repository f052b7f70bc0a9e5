// The chat template's file format and rendering (see chat_template.h).
#include "server/chat_template.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace linserve::server {
namespace {

constexpr absl::string_view kPlaceholder = "{text}";

absl::StatusOr<std::string> Unescape(absl::string_view value,
                                     absl::string_view where) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '\\') {
      out += value[i];
      continue;
    }
    if (i + 1 == value.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": a lone '\\' ends the value; write \\\\"));
    }
    switch (value[++i]) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case '\\':
        out += '\\';
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": unknown escape '\\", value.substr(i, 1),
                         "'; only \\n, \\t and \\\\ are allowed"));
    }
  }
  return out;
}

std::string Escape(absl::string_view value) {
  return absl::StrReplaceAll(value,
                             {{"\\", "\\\\"}, {"\n", "\\n"}, {"\t", "\\t"}});
}

std::string Fill(absl::string_view format, absl::string_view text) {
  return absl::StrReplaceAll(format, {{kPlaceholder, text}});
}

}  // namespace

std::string ChatTemplate::RenderTurn(bool session_empty,
                                     absl::string_view system_prompt,
                                     absl::string_view user_text) const {
  std::string out;
  if (session_empty) {
    if (!system_prompt.empty()) out += Fill(system, system_prompt);
  } else {
    out += separator;
  }
  out += Fill(user, user_text);
  return out;
}

std::string ChatTemplate::ToFileFormat() const {
  std::string out =
      absl::StrCat("system=", Escape(system), "\n", "user=", Escape(user), "\n",
                   "separator=", Escape(separator), "\n");
  for (const std::string& stop : stop_strings) {
    absl::StrAppend(&out, "stop=", Escape(stop), "\n");
  }
  absl::StrAppend(&out, "bos=", add_bos ? "true" : "false", "\n");
  return out;
}

absl::StatusOr<ChatTemplate> ParseChatTemplate(absl::string_view text,
                                               absl::string_view source) {
  ChatTemplate result;
  result.stop_strings.clear();
  bool has_user = false;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    if (line.empty() || line[0] == '#') continue;
    const std::string where = absl::StrCat(source, ":", line_number);
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ": expected key=value (keys: system, user, separator, stop, "
          "bos), got '",
          line, "'"));
    }
    const absl::string_view key = line.substr(0, eq);
    std::string value;
    {
      absl::StatusOr<std::string> unescaped =
          Unescape(line.substr(eq + 1), where);
      if (!unescaped.ok()) return unescaped.status();
      value = *std::move(unescaped);
    }
    if (key == "system") {
      result.system = value;
    } else if (key == "user") {
      if (absl::string_view(value).find(kPlaceholder) ==
          absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": the user format must contain {text}, got '", line, "'"));
      }
      result.user = value;
      has_user = true;
    } else if (key == "separator") {
      result.separator = value;
    } else if (key == "stop") {
      if (value.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": a stop string must not be empty"));
      }
      if (result.stop_strings.size() >= kMaxChatTemplateStopStrings) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": at most ", kMaxChatTemplateStopStrings, " stop strings"));
      }
      result.stop_strings.push_back(value);
    } else if (key == "bos") {
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": bos must be true or false, got '", value, "'"));
      }
      result.add_bos = value == "true";
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown key '", key,
                       "' (keys: system, user, separator, stop, bos)"));
    }
  }
  if (!has_user) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no user=... line (e.g. user=User: {text}\\nAssistant:)"));
  }
  return result;
}

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& flag_path,
                                              const std::string& model_dir) {
  std::string path = flag_path;
  if (path.empty()) {
    path = absl::StrCat(model_dir, "/", kChatTemplateFileName);
    std::ifstream probe(path);
    if (!probe) return ChatTemplate{};
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read the chat template '", path,
        "' (--chat_template): give a readable file or leave the flag empty"));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  return ParseChatTemplate(contents.str(), path);
}

}  // namespace linserve::server
