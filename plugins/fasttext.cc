/*
 * A tollgate filter plugin that classifies text with a supervised fastText
 * model (Debian's libfasttext-dev, fastText 0.9.2).
 *
 *   "clf": {"type": "plugin", "path": "fasttext.so", "model": "injection.bin",
 *           "labels": {"__label__injection": 0.8}, "action": "block"}
 *
 * init loads the model named by "model"; classify returns every label of
 * the model with its probability. Text is prepared the way the training
 * data in plugins/data is written: ASCII letters lower-cased, and line
 * breaks, tabs and ASCII punctuation turned into spaces. README.md beside
 * this file explains how to train a model of your own.
 */
#include <cctype>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include <fasttext/fasttext.h>

#include <tollgate/plugin.h>

namespace {

struct Classifier {
	fasttext::FastText model;
	std::vector<std::string> labels;        /* the model's, for stable names */
};

void
set_error(char *err, size_t err_size, const char *fmt, const char *detail)
{
	if (err_size > 0)
		std::snprintf(err, err_size, fmt, detail);
}

/* Lower-case ASCII letters; ASCII punctuation and whitespace become a
 * space, so one line goes to fastText and words match the training data. */
std::string
prepare(const char *text, size_t len)
{
	std::string out(text, len);

	for (char &c : out) {
		unsigned char u = static_cast<unsigned char>(c);

		if (u < 0x80 && (std::ispunct(u) || std::isspace(u)))
			c = ' ';
		else if (u < 0x80)
			c = static_cast<char>(std::tolower(u));
	}
	return out;
}

int
fasttext_init(const struct tollgate_plugin_config *config, void **state, char *err,
              size_t err_size)
{
	if (config->model == nullptr) {
		set_error(err, err_size, "%s", "\"model\" is missing: set it to a supervised "
		          "fastText model file (.bin or .ftz)");
		return -1;
	}

	try {
		auto *c = new Classifier;

		try {
			c->model.loadModel(config->model);
		} catch (const std::exception &e) {
			delete c;
			set_error(err, err_size, "cannot load the model: %s", e.what());
			return -1;
		}

		auto dict = c->model.getDictionary();
		if (dict->nlabels() == 0) {
			delete c;
			set_error(err, err_size, "%s is not a supervised model: it has no labels",
			          config->model);
			return -1;
		}
		for (int32_t i = 0; i < dict->nlabels(); i++)
			c->labels.push_back(dict->getLabel(i));
		*state = c;
		return 0;
	} catch (const std::exception &e) {
		set_error(err, err_size, "%s", e.what());
		return -1;
	}
}

int
fasttext_classify(void *state, const char *text, size_t len, struct tollgate_label *labels,
                  size_t max_labels)
{
	const auto *c = static_cast<const Classifier *>(state);

	try {
		std::istringstream in(prepare(text, len) + "\n");
		std::vector<std::pair<fasttext::real, std::string>> predictions;
		size_t n = 0;

		if (!c->model.predictLine(in, predictions, -1, 0.0))
			return 0;
		for (const auto &p : predictions) {
			if (n == max_labels)
				break;
			for (const auto &label : c->labels) {
				if (label == p.second) {
					labels[n].name = label.c_str();
					labels[n].score = p.first;
					n++;
					break;
				}
			}
		}
		return static_cast<int>(n);
	} catch (const std::exception &) {
		return -1;
	}
}

void
fasttext_destroy(void *state)
{
	delete static_cast<Classifier *>(state);
}

} // namespace

extern "C" {
extern const struct tollgate_plugin tollgate_plugin;

const struct tollgate_plugin tollgate_plugin = {
	TOLLGATE_PLUGIN_ABI_VERSION,
	"fasttext",
	fasttext_init,
	fasttext_classify,
	fasttext_destroy,
};
}
