// The chat template's file format and rendering (server/chat_template.h).
#include "server/chat_template.h"

#include <catch2/catch.hpp>

namespace linserve::server {
namespace {

TEST_CASE(
    "a chat template file parses key by key, with escapes, and renders "
    "system, separator and user slots") {
  const auto parsed = ParseChatTemplate(
      "# a comment\n"
      "\n"
      "system=<<SYS>>{text}<</SYS>>\\n\n"
      "user=[INST] {text} [/INST]\n"
      "separator=\\n\n"
      "stop=[INST]\n"
      "stop=</s>\\t\\\\\n"
      "bos=false\n",
      "test.txt");
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  CHECK(parsed->system == "<<SYS>>{text}<</SYS>>\n");
  CHECK(parsed->stop_strings == std::vector<std::string>{"[INST]", "</s>\t\\"});
  CHECK_FALSE(parsed->add_bos);

  CHECK(parsed->RenderTurn(/*session_empty=*/true, "Be brief.", "Hi") ==
        "<<SYS>>Be brief.<</SYS>>\n[INST] Hi [/INST]");
  CHECK(parsed->RenderTurn(/*session_empty=*/true, "", "Hi") ==
        "[INST] Hi [/INST]");
  // A non-empty session: the separator, and no system slot.
  CHECK(parsed->RenderTurn(/*session_empty=*/false, "Be brief.", "Hi") ==
        "\n[INST] Hi [/INST]");

  // The file format round-trips.
  const auto again = ParseChatTemplate(parsed->ToFileFormat(), "again");
  REQUIRE(again.ok());
  CHECK(again->ToFileFormat() == parsed->ToFileFormat());
}

TEST_CASE(
    "the default chat template is a plain dialogue that stops at the "
    "next User: turn") {
  const ChatTemplate chat_template;
  CHECK(chat_template.RenderTurn(true, "", "Who made light?") ==
        "User: Who made light?\n\nAssistant:");
  CHECK(chat_template.RenderTurn(false, "ignored", "And then?") ==
        "\n\nUser: And then?\n\nAssistant:");
  CHECK(chat_template.stop_strings == std::vector<std::string>{"User:"});
  CHECK(chat_template.add_bos);
  const auto parsed = ParseChatTemplate(chat_template.ToFileFormat(), "x");
  REQUIRE(parsed.ok());
  CHECK(parsed->user == chat_template.user);
}

TEST_CASE("chat template errors name the file, the line and the problem") {
  auto error = [](const char* text) {
    return ParseChatTemplate(text, "tpl.txt").status();
  };
  CHECK_THAT(std::string(error("user=no placeholder\n").message()),
             Catch::Matchers::Contains("tpl.txt:1") &&
                 Catch::Matchers::Contains("{text}"));
  CHECK_THAT(std::string(error("user={text}\ncolour=red\n").message()),
             Catch::Matchers::Contains("tpl.txt:2") &&
                 Catch::Matchers::Contains("unknown key 'colour'"));
  CHECK_THAT(std::string(error("user={text}\\q\n").message()),
             Catch::Matchers::Contains("unknown escape"));
  CHECK_THAT(std::string(error("system={text}\n").message()),
             Catch::Matchers::Contains("no user="));
  CHECK_THAT(std::string(error("user={text}\nbos=yes\n").message()),
             Catch::Matchers::Contains("bos must be true or false"));
  CHECK_THAT(std::string(error("user={text}\njust text\n").message()),
             Catch::Matchers::Contains("expected key=value"));
  CHECK(error("user={text}\nstop=\n").code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE(
    "LoadChatTemplate falls back to the default without a file, and "
    "names a missing --chat_template file") {
  const auto fallback = LoadChatTemplate("", "/nonexistent-model-dir");
  REQUIRE(fallback.ok());
  CHECK(fallback->user == ChatTemplate().user);
  const auto missing = LoadChatTemplate("/nonexistent/tpl.txt", "/x");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(missing.status().message()),
             Catch::Matchers::Contains("/nonexistent/tpl.txt"));
}

}  // namespace
}  // namespace linserve::server
