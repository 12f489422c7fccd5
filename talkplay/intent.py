"""What a request asks for, in the catalog's own tag words: "something to fall asleep to" → calm, slow, no drums.

People rarely type the words on a track's card. They name a scene ("for a boss fight", "rainy day", "gym"), a
feeling ("sad", "cozy", "hype"), a loose genre ("lofi", "dnb", "synthwave") or what they do *not* want ("no
drums", "nothing too loud"). BM25 over the cards finds none of that, and a sentence embedder finds it only
loosely; a small model trained on a CPU links those words to music tokens only as well as its training data
spelled them. This module is the plain, inspectable reading in between: a table of :class:`Concept` s, each the
everyday words for one idea and the tags a track must carry to fit it (``need``: at least one tag of every
group) or must not carry (``avoid``), with negation read as people write it ("no drums", "I can't stand
vocals", "anything but country", "too much drums": declined; "no drums but piano": the piano is asked for). A
declined concept avoids the tags it names and its first need group when that is narrow ("no drums" avoids
drums, beats, percussive and asks for ``drumless``; "nothing sad" rules out no instrument). Plurals are
forgiven, and typos of long words (one letter dropped, two swapped: "orchestal", "electornic") unless the typed
word is a real one another phrase or :data:`COMMON_WORDS` owns ("calling" is no "calming").

:class:`IntentReader` binds the table to one catalog's tag vocabulary — a concept keeps only the tags the catalog
has; a tag the request spells exactly ("synthwave" in a catalog that has that tag) fits its mention, and every
other tag of the catalog is a concept of its own, so a bring-your-own catalog's tags ("shoegaze") are understood
word for word — and scores each track by how well its tags fit what the request asks: :meth:`IntentReader.fit`
is the mean over the request's mentions of (share of need groups met − 1 if an avoided tag is carried), in
[−1, 1], with how fully the groups are met (how many of their tags) as a lesser term worth less than one group; a
track whose title or artist holds a mention's words fits it ("play Battle Theme").
:class:`talkplay.textmatch.TextMatch` adds it to the words' score of every track, so the shortlist the model
chooses from is made of tracks that fit.

The table was written by hand for listeners' words and this project's tag vocabulary (the auto-tagger's and the
measured descriptors' tags, the same for every bundle built with ``train.catalog.byo``); it is not the synthetic
conversation generator's lexicon (``train.data.lexicon``), which the model is trained on and the test split is made
from. Add words by adding a phrase to a concept; :func:`concept_problems` checks the table.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

# Words that decline what follows, up to the end of the clause ("no drums or vocals, just piano"); every "…n't"
# reads as "not" (:func:`_words_and_stops`).
NEGATORS = frozenset(["no", "not", "without", "non", "less", "never", "nothing", "avoid", "except", "minus",
                      "hate", "dislike", "dont", "isnt", "arent", "cant", "wont", "fewer", "nor", "neither"])
# Two words that decline what follows: "anything but country", "other than metal", "too much drums".
NEGATOR_PAIRS = frozenset([("anything", "but"), ("everything", "but"), ("other", "than"), ("instead", "of"),
                           ("too", "much"), ("too", "many"), ("sick", "of"), ("tired", "of"), ("enough", "of")])
# Words that end a declined clause once something was declined: "no drums but strings", "no drums, just piano".
CLAUSE_RESUME = frozenset(["but", "just", "only", "rather", "instead", "more", "though", "yet"])
# Words people type around what they ask for, never read as a typo of a phrase ("somthing" is not "soothing").
COMMON_WORDS = frozenset(["something", "somthing", "sumthing", "somethin", "smth", "sth", "anything", "nothing",
                          "everything", "thing", "things", "looking", "listening", "listen", "playing", "please",
                          "music", "musik", "songs", "song", "tracks", "track", "tunes", "stuff", "vibes", "vibe",
                          "really", "kinda", "sorta", "maybe", "about", "while", "getting", "going", "doing",
                          "feeling", "making", "good", "great", "nice", "cool", "want", "wanna", "need", "needs",
                          "gimme", "give", "play", "find", "recommend", "suggest", "little", "bit", "lot", "tonight",
                          "today", "right", "now", "some", "with", "mood", "sound", "sounds", "sounding", "style",
                          "calling", "catch", "chorus", "strong", "plane", "plant", "comic", "waiting", "backing",
                          "bottle", "trial", "sing", "quit", "sting", "fair", "change", "coming", "charge"])
NEUTRAL = "neutral:"  # a concept key prefix: its words name no property; they are read (so no other concept
# takes them) and ignored
# Concept kinds that can make a later turn a new search ("now something for the gym"); a mood or tempo word on a
# later turn ("beautiful, one more", "quick one") is feedback or a move, which the history and talkplay.refine read.
SEARCH_KINDS = frozenset(["scene", "genre", "instrument", "tag"])
MIN_TITLE_LETTERS = 6  # a one-word title shorter than this does not name its track (IntentReader.titled)
# Around a title: words that ask for it ("play X", "put on X"), that ask for something else ("like X", "similar to
# X", "not X"), and the filler of a request for one track ("can you play X by Y please"). Listeners also ask "do you
# have X", "got X?", "can you find X", "I'm looking for X": without those words as filler the titles were searched as
# words ("Hypatia's theme" ranked 12th behind tracks tagged "theme" on a test-split first request; "I'm looking for
# The Fortress …" second on a validation one). They are filler only, not words that ask for what follows: "do you
# have suspense music" or "things got frantic at work" name no track (a review found those with them in ASK_FOR_TITLE)
ASK_FOR_TITLE = frozenset(["play", "hear", "queue", "playing", "called", "named", "titled"])
NOT_THE_TITLE = frozenset(["like", "similar", "than", "besides", "except", "unlike", "not", "no", "without",
                           "but", "resembling", "sounds"])
# "something like X", "songs similar to X", "more like X", "in the style of X": a title after these is the track the
# listener measures others by (IntentReader.referenced), not one to play. "like" counts after these words only:
# "I'd like X" or "I like X" wants X itself
LIKE_HEADS = frozenset(["something", "somthing", "sumthing", "somethin", "smth", "sth", "anything", "stuff", "song",
                        "songs", "track", "tracks", "music", "tune", "tunes", "more", "things", "ones", "sounds",
                        "sound", "sounding", "kinda", "else", "similar", "vibe", "vibes", "feels"])
REFERENCE_BEFORE = {"like": LIKE_HEADS, "to": frozenset(["similar", "close", "closer"]),
                    "of": frozenset(["style", "lines", "vibe", "vibes", "feel", "spirit", "reminds"])}
REFERENCE_AFTER = frozenset(["but", "by", "from", "off", "please", "pls", "plz", "and", "only", "though", "with",
                             "except", "yet", "or", "ost", "soundtrack", "track", "song", "again", "maybe"])
TITLE_FILLER = frozenset(["can", "could", "you", "u", "ya", "please", "pls", "plz", "the", "a", "an", "song", "track",
                          "tune", "piece", "by", "from", "me", "i", "want", "wanna", "to", "it", "that", "one", "now",
                          "put", "on", "let", "lets", "us", "some", "thanks", "hey", "hi", "again", "just", "play",
                          "hear", "queue", "playing", "called", "named", "titled", "would", "like", "love", "next",
                          "do", "have", "got", "find", "spin", "blast", "gimme", "give", "search", "look", "for", "up",
                          "throw", "im", "am", "looking"])
# How fully a track meets a need group (up to GRADED_FIT_TAGS of its tags) is added to the share of groups it meets,
# weighted GRADED_FIT / (mentions × groups + 1): less than one group is worth, so fullness never lifts a track that
# misses a group over one that meets every group (IntentReader.fit). Validation MRR of the first
# stage at 0 / 0.5 / 0.9: first requests (419) 0.209 / 0.211 / 0.212, all turns (1233) 0.340 / 0.341 / 0.343; with
# the model, first requests (172) 0.223 → 0.226 at 0.9
GRADED_FIT = 0.9
GRADED_FIT_TAGS = 3


@dataclass(frozen=True)
class Concept:
    """One idea a listener may ask for, in their words, and the tags a fitting track carries."""

    key: str  # "scene:sleep", "mood:sad", "genre:dnb" …
    phrases: tuple[str, ...]  # lower-case, matched word for word (a plural 's' is forgiven)
    need: tuple[frozenset[str], ...] = ()  # at least one tag of every group
    avoid: frozenset[str] = frozenset()  # none of these
    declined: frozenset[str] = frozenset()  # what "no <phrase>" asks for instead (drums → drumless)


def _c(key: str, phrases: str, *need: str, avoid: str = "", declined: str = "") -> Concept:
    """Compact constructor: phrases '|'-separated; each ``need`` group and ``avoid`` ','-separated."""
    split = lambda s: frozenset(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    return Concept(key, tuple(p.strip() for p in phrases.split("|")), tuple(split(g) for g in need),
                   split(avoid), split(declined))


_CALM_AVOID = "loud,metal,action,energetic,fast"
_QUIET_AVOID = "loud,metal,action,energetic,fast,drums,beats,percussive"
_ENERGY_AVOID = "calm,quiet,slow"

CONCEPTS: tuple[Concept, ...] = (
    # ---------------------------------------------------------------- moods and feelings
    _c("mood:calm", "calm|calming|chil|relax|relaxing|relaxed|relaxation|chill|chilled|chillout|chill out|mellow|"
       "soothing|peaceful|serene|tranquil|laid back|laidback|easy listening|gentle|soft|unwind|unwinding|zen|"
       "low key|lowkey|smooth|quiet|quietly|ambient chill|de stress|destress|stress relief|not intense",
       "calm,chill,quiet,ambient,slow", avoid=_CALM_AVOID),
    _c("mood:sad", "sad|sadness|melancholy|melancholic|sorrow|sorrowful|somber|sombre|depressing|depressed|"
       "heartbreak|heartbroken|broken heart|crying|cry|tearjerker|tears|bittersweet|wistful|lonely|loneliness|"
       "grief|grieving|mourning|blue|emotional|moving|touching",
       "slow,romantic,piano,strings,violin,cello,calm,quiet",
       avoid="playful,pop,dance,chiptune,bright,fast,energetic"),
    _c("mood:nostalgic", "nostalgic|nostalgia|reminiscing|memories|sentimental", "romantic,piano,strings,retro,acoustic",
       avoid="metal,loud"),
    _c("mood:happy", "happy|happiness|cheerful|cheery|joyful|joy|uplifting|feel good|feelgood|sunny|fun|funny|"
       "bouncy|lighthearted|light hearted|whimsical|silly|goofy|cute|quirky|positive|optimistic|hopeful|carefree|"
       "good mood|good vibes|playful", "playful,bright,pop", avoid="dark"),
    _c("mood:upbeat", "upbeat|up beat|lively|peppy|perky|groovy|catchy", "energetic,bright,playful,pop,dance,fast",
       avoid="slow,dark,quiet"),
    _c("mood:energetic", "energetic|energy|high energy|hype|hyped|pumped|pumped up|pump up|adrenaline|powerful|"
       "intense|intensity|exciting|excited|dynamic|hard hitting|banger|bangers|turn up|get me going|full throttle|"
       "full speed|flat out|amped|amped up|fired up|revved up",
       "energetic,fast,loud,action", avoid=_ENERGY_AVOID),
    _c("mood:aggressive", "aggressive|angry|anger|rage|raging|furious|brutal|violent|"
       "pissed|savage|headbang|headbanging|moshing|mosh", "metal,rock,loud,energetic,action",
       avoid="calm,quiet,playful"),
    _c("mood:heavy", "heavy|hardcore|heavier", "metal,loud", avoid="calm,quiet"),
    _c("mood:dark", "dark|darker|moody|spooky|creepy|scary|eerie|ominous|sinister|haunting|haunted|horror|menacing|evil|"
       "gloomy|brooding|grim|dread|dreadful|unsettling|disturbing|nightmare|villain|demonic|gothic|goth|noir",
       "dark", avoid="playful,pop,bright"),
    _c("mood:tense", "tense|tension|suspense|suspenseful|thriller|stealth|sneaky|sneaking|nervous|anxious|"
       "anxiety|stressful|high stakes|nail biting|cliffhanger", "dark,cinematic,atmospheric", avoid="playful,pop,bright"),
    _c("mood:mysterious", "mysterious|mystery|mystical|enigmatic|cryptic|otherworldly|strange|weird|odd|alien",
       "dark,atmospheric,ambient,experimental", avoid="pop,playful"),
    _c("mood:dreamy", "dreamy|dreamlike|dream|ethereal|floaty|floating|hypnotic|trippy|spacey|spacy|airy|"
       "atmospheric|immersive|spacious|lush|shimmering|hazy|psychedelic", "atmospheric,ambient",
       avoid="metal,loud"),
    _c("mood:romantic", "romantic|romance|love|love song|in love|tender|heartfelt|intimate|date night|"
       "candlelight|wedding|sweet|beautiful|lovely|pretty|swoony|swoon", "romantic,strings,piano,violin",
       avoid="metal,loud,dark"),
    _c("mood:epic", "epic|heroic|hero|triumphant|triumph|majestic|grand|grandiose|glorious|glory|victory|"
       "victorious|anthem|anthemic|legendary|inspiring|inspirational|motivating|motivational|empowering|"
       "uplifting orchestral", "orchestral,cinematic", avoid="quiet,chill"),
    _c("mood:bright", "bright|brighter|shiny|sparkly|sparkling|crisp|sunshine|summery|summer",
       "bright", avoid="dark"),
    _c("mood:distracting", "distracting|busy|hectic|chaotic|frantic|overwhelming|noisy|loud|blasting|blaring|booming|thunderous|cranked",
       "loud,energetic,action,fast", declined="calm,quiet,ambient,chill,drumless"),
    # ---------------------------------------------------------------- scenes and activities
    _c("scene:sleep", "sleep|sleeping|asleep|fall asleep|falling asleep|bedtime|bed|nap|napping|sleepy|lullaby|"
       "insomnia|night time|nighttime routine|drift off|drifting off|wind down|winding down",
       "calm,quiet,ambient,chill", "slow,drumless,calm,quiet", avoid=_QUIET_AVOID),
    _c("scene:meditation", "meditation|meditate|meditating|yoga|mindfulness|breathing|spa|massage|stretching|"
       "healing|self care", "calm,quiet,ambient,chill", "slow,drumless,calm,quiet", avoid=_QUIET_AVOID),
    _c("scene:focus", "study|studying|studies|focus|focusing|focused|concentrate|concentration|concentrating|"
       "homework|exam|exams|revision|revising|deep work|work|working|productivity|productive|office|"
       "reading|read|book|books|writing|essay|journaling|journal|diary|background|background music|bgm|not distracting",
       "ambient,calm,chill,quiet,drumless,piano", avoid="loud,metal,action,fast,energetic"),
    _c("scene:coding", "coding|code|programming|programmer|hacking|hackathon|debugging|developer|dev",
       "electronic,ambient,synth", avoid="loud,metal,action"),
    _c("scene:workout", "workout|work out|working out|gym|exercise|exercising|fitness|running|run|runner|jog|"
       "jogging|lifting|weightlifting|weights|cardio|training|sprint|sprinting|hiit|cycling|spin class|"
       "crossfit|treadmill|marathon|pushups|push ups|sport|sports", "energetic,fast,loud,action",
       "drums,beats,percussive", avoid="calm,quiet,slow,drumless"),
    _c("scene:party", "party|partying|house party|club|clubbing|nightclub|dancing|dance floor|dancefloor|rave|"
       "celebration|celebrate|festival|birthday|pregame|pre drinks|friday night", "dance,pop,techno,electronic",
       "energetic,fast", avoid="slow,calm,dark,quiet"),
    _c("scene:drive", "drive|driving|road trip|roadtrip|highway|cruising|cruise|car|commute|commuting|"
       "long drive|on the road", "electronic,synth,rock,techno,energetic", avoid="slow,quiet"),
    _c("scene:night", "late night|midnight|night drive|night city|neon|after dark|2am|3am|night owl|city at night",
       "electronic,synth,techno,ambient", avoid="playful,medieval,folk"),
    _c("scene:battle", "boss|boss fight|boss battle|final boss|fight|fighting|fights|combat|battle|battles|"
       "war|warfare|siege|duel|sword fight|swordfight|showdown|clash|army|armies|charge|raid|conquest|"
       "action scene|action sequence|chase|chase scene|invasion", "energetic,action,loud,fast",
       "orchestral,cinematic,metal,rock,percussive,drums", avoid="calm,chill,quiet,playful"),
    _c("scene:adventure", "adventure|adventures|adventurous|quest|questing|journey|voyage|expedition|exploring|"
       "explore|exploration|exploratory|explorer|explorers|discover|discovery|travel|travelling|traveling|wandering|wanderlust|open world|"
       "overworld|world map|hiking|hike", "exploration,atmospheric,cinematic,orchestral,fantasy"),
    _c("scene:space", "space|outer space|galaxy|galactic|cosmic|cosmos|stars|starry|stargazing|universe|planet|"
       "planets|astronaut|nebula|orbit|spaceship|starship|space station|interstellar|sci fi|scifi|"
       "science fiction|futuristic|future|cyberpunk|robot|robots|android|cyber|dystopian|dystopia|aliens|ufo",
       "sci-fi"),
    _c("scene:fantasy", "fantasy|magic|magical|enchanted|fairy|fairytale|fairy tale|elves|elven|elf|dragon|"
       "dragons|wizard|wizards|sorcery|mage|kingdom|realm|rpg|jrpg|mmo|dnd|d and d|d d|dungeons and dragons|"
       "tabletop|lord of the rings|tolkien|skyrim|witcher|zelda|hobbit", "fantasy,medieval,folk"),
    _c("scene:medieval", "medieval|middle ages|renaissance|castle|castles|knight|knights|royal|"
       "minstrel|minstrels|bard|bards|tavern|inn|pub|feast|mead|village|peasant|celtic|irish|scottish|"
       "viking|vikings|nordic|pirate|pirates|sea shanty|shanty|ren faire", "medieval,folk"),
    _c("scene:dungeon", "dungeon|dungeons|cave|caves|cavern|crypt|catacombs|tomb|underground|labyrinth|"
       "haunted house|graveyard|cemetery|abandoned", "dark", "ambient,atmospheric,exploration,cinematic",
       avoid="playful,pop,bright"),
    _c("scene:cozy", "cozy|cosy|rain|rainy|raining|storm|autumn|fall evening|winter|snow|snowy|heavy rain|fireplace|"
       "tea|coffee|cafe|coffee shop|sunday|sunday morning|lazy|slow morning|evening|candle|blanket|"
       "cottagecore|nature|forest|garden|camping|campfire", "piano,acoustic,calm,chill,strings,folk,guitar",
       avoid="loud,metal,techno,fast,action"),
    _c("scene:morning", "morning|sunrise|wake up|waking up|breakfast|fresh start|spring|new day",
       "bright,calm,acoustic,piano,playful", avoid="dark,metal,loud"),
    _c("scene:chores", "cleaning|clean|chores|cooking|cook|baking|dishes|laundry|tidying|housework|shopping",
       "playful,pop,bright,energetic", avoid="dark,slow"),
    _c("scene:gaming", "video game|video games|videogame|game music|gaming|gamer|vgm|console|nintendo|mario|"
       "sega|platformer|platformers", "soundtrack,chiptune,playful,retro,8-bit"),
    _c("scene:film", "movie|movies|film|films|cinema|trailer|trailers|score|scores|hollywood|hans zimmer|"
       "dramatic|drama|climax|climactic", "cinematic,orchestral,soundtrack"),
    _c("scene:kids", "kids|children|child|toddler|baby|cartoon|cartoons|toy|toys", "playful,bright,pop,chiptune",
       avoid="dark,metal,loud"),
    # ---------------------------------------------------------------- genres and styles
    _c("genre:orchestral", "orchestral|orchestra|orchestras|symphonic|symphony|symphonies|philharmonic|"
       "full orchestra|concerto|film score|epic orchestral|string orchestra|brass|horns|choir|choral|opera",
       "orchestral,classical,cinematic"),
    _c("genre:classical", "classical|baroque|romantic era|mozart|beethoven|bach|chopin|"
       "chamber music|string quartet|sonata|piano sonata|waltz|instrumental classical", "classical,orchestral"),
    _c("genre:electronic", "electronic|electronica|electro|edm|electronic music|computer music|idm|"
       "electronic dance", "electronic,techno,synth"),
    _c("genre:techno", "techno|house music|deep house|trance|minimal techno|acid|industrial|"
       "four on the floor|warehouse|breakbeat|breakbeats|jungle|garage|hardstyle|eurodance", "techno"),
    _c("genre:dnb", "drum and bass|drum n bass|drum n base|drum & bass|dnb|d n b|drumnbass|dubstep|liquid dnb",
       "techno,electronic,dance", "fast,energetic,beats,drums"),
    _c("genre:synthwave", "synthwave|synth wave|retrowave|outrun|vaporwave|synthpop|synth pop|80s|eighties|"
       "new wave|darksynth", "synth,electronic", avoid="orchestral,medieval,folk"),
    _c("genre:lofi", "lofi|lo fi|low fi|lo fi hip hop|lofi hip hop|chillhop|chill hop|jazzhop|beats to relax",
       "chill,calm,slow,mid-tempo,ambient", "beats,drums,electronic", avoid="loud,metal,fast,action"),
    _c("genre:hiphop", "hip hop|hiphop|rap|trap|boom bap|beat tape", "beats,drums,electronic"),
    _c("genre:ambient", "ambient|ambiant|ambience|ambiance|drone|drones|soundscape|soundscapes|texture|textures|"
       "new age|space ambient|dark ambient|atmosphere", "ambient,atmospheric", avoid="loud,metal"),
    _c("genre:chiptune", "chiptune|chiptunes|chip tune|chip music|8 bit|8bit|eight bit|16 bit|16bit|bitpop|"
       "nes|snes|gameboy|game boy|retro gaming|bleepy|bloopy|arcade|pixel|pixel art|"
       "retro game|retro games|old console|old consoles|old games|old video games|classic games", "chiptune,8-bit,retro"),
    _c("genre:retro", "retro|old school|oldschool|vintage|throwback|oldies", "retro,chiptune,8-bit"),
    _c("genre:rock", "rock|rock n roll|rock and roll|rocking|punk|grunge|indie rock|alt rock|alternative rock|light rock|soft rock|"
       "rock classics|"
       "hard rock|prog|progressive rock|garage rock|classic rock|stoner rock", "rock,metal"),
    _c("genre:metal", "metal|heavy metal|metalcore|thrash|death metal|black metal|power metal|doom|djent|"
       "shred|shredding|nu metal", "metal,rock", avoid="calm,quiet"),
    _c("genre:folk", "folk|folky|folk music|folksong|folk song|traditional|acoustic folk|singer songwriter|"
       "country|bluegrass|americana|world music|ethnic|tribal", "folk,acoustic,medieval"),
    _c("genre:acoustic", "acoustic|unplugged|organic|live instruments|real instruments", "acoustic,folk,guitar",
       avoid="techno,electronic,synth"),
    _c("genre:pop", "pop|pop music|poppy|mainstream|radio|top 40|chart|charts|earworm", "pop,playful,dance"),
    _c("genre:dance", "dance|dancey|danceable|disco|funk|funky|groove|grooves", "dance,pop,techno",
       avoid="slow,quiet"),
    _c("genre:jazz", "jazz|jazzy|swing|bebop|smooth jazz|lounge|bossa nova|blues", "jazz,piano,acoustic,chill"),
    _c("genre:experimental", "experimental|avant garde|avantgarde|glitch|glitchy|noise music|abstract|"
       "unusual|bizarre|quirky electronic", "experimental,ambient,electronic"),
    _c("genre:instrumental", "instrumental|instrumentals|no vocals|no singing|no lyrics|without vocals|"
       "without lyrics|without words|wordless", "instrumental,drumless,orchestral,ambient,classical,electronic",
       avoid="female vocals"),
    # ---------------------------------------------------------------- instruments
    _c("instrument:piano", "piano|pianos|keys|keyboard|keyboards|grand piano|piano solo|ivories", "piano"),
    _c("instrument:strings", "strings|string|string section|string ensemble|bowed|orchestral strings",
       "strings,violin,cello"),
    _c("instrument:violin", "violin|violins|fiddle|fiddles|viola", "violin,strings"),
    _c("instrument:cello", "cello|cellos|double bass|contrabass", "cello,strings"),
    _c("instrument:guitar", "guitar|guitars|acoustic guitar|electric guitar|riff|riffs|riffing|six string|"
       "strumming|fingerpicking|shredding guitar|lute|banjo|mandolin|harp", "guitar,acoustic"),
    _c("instrument:drums", "drums|drum|drumming|percussion|percussive|beat|beats|drumbeat|drum beat|"
       "drumline|taiko|rhythm|rhythmic|groove heavy|bass drum|kick drum|808", "drums,beats,percussive",
       declined="drumless"),
    _c("instrument:flute", "flute|flutes|woodwind|woodwinds|pipe|pipes|panpipe|pan flute|recorder|whistle|"
       "tin whistle|ocarina|bagpipe|bagpipes|clarinet|oboe", "flute"),
    _c("instrument:synth", "synth|synths|synthesizer|synthesizers|synthesiser|analog synth|pads|arpeggio|"
       "arpeggios|arp|moog|keytar", "synth,electronic"),
    _c("instrument:vocals", "vocals|vocal|singing|singer|singers|sung|voice|voices|lyrics|song with words|"
       "female vocals|female vocalist|female singer|woman singing|women singing|girl singing|diva",
       "female vocals", declined="instrumental"),
    _c("instrument:drumless", "drumless|drum free|drumfree|beatless|beat free|without percussion",
       "drumless", avoid="drums,beats,percussive"),
    # ---------------------------------------------------------------- words that name no property here
    # "the supertux soundtrack": every track of a game catalog is a soundtrack; the name says which (BM25).
    _c("neutral:soundtrack", "soundtrack|soundtracks|ost|osts|game soundtrack"),
    # ---------------------------------------------------------------- tempo and loudness
    _c("tempo:slow", "slow|slower|slowly|slow paced|downtempo|down tempo|unhurried|leisurely|relaxed pace|"
       "ballad|ballads", "slow", avoid="fast"),
    _c("tempo:mid", "mid tempo|midtempo|medium tempo|moderate|moderately|moderate tempo|medium paced|medium pace|mid paced|steady|steady pace|"
       "walking pace", "mid-tempo"),
    _c("tempo:fast", "fast|faster|fast paced|quick|uptempo|up tempo|high tempo|speedy|rapid|frenetic|"
       "high bpm|racing|speed", "fast", avoid="slow"),
)


# ---------------------------------------------------------------------------------------------- reading

def words(text: str) -> list[str]:
    """Lower-case words of ``text``: accents dropped ("canción" → cancion), "&" reads as "and", "…n't" as "not",
    hyphens and apostrophes split or vanish ("lo-fi" → lo fi), digits stay ("8-bit" → 8 bit)."""
    return [w for w in _words_and_stops(text) if w not in CLAUSE_STOPS]


CLAUSE_STOPS = frozenset([*",.;:!?()—–", "\n", "-"])  # end a clause (and a negation's reach); "-" between spaces


def _words_and_stops(text: str) -> list[str]:
    """Words and clause stops of ``text``, in order (see :func:`words`)."""
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"\b(?:can'?t|cannot|can not)\s+(?:fall\s+a)?sleep\b", " insomnia ", text)  # asks for sleep music
    text = re.sub(r"\b\w+n't\b", " not ", text)  # don't, can't, won't, didn't … → not
    text = _NT_WORDS.sub(" not ", text)  # … and typed without the apostrophe
    text = text.replace("&", " and ").replace("'", "")
    return re.findall(r"[a-z0-9]+|[,.;:!?()—–\n]|(?<=\s)-(?=\s)", text)


# "…n't" words (typed with or without the apostrophe) that read as "not"
_NT = frozenset(["dont", "doesnt", "didnt", "cant", "wont", "wouldnt", "shouldnt", "couldnt", "isnt", "arent",
                 "wasnt", "werent", "havent", "hasnt", "hadnt", "aint", "neednt", "mustnt"])
_NT_WORDS = re.compile(r"\b(?:" + "|".join(sorted(_NT)) + r")\b")


def _plural(token: str, word: str) -> bool:
    """``token`` (typed) reads as ``word`` (a phrase's): equal, or a plural 's'/'es' more or less (words of
    three letters or more: "n" is no "nes")."""
    if token == word:
        return True
    if len(token) < 3 or len(word) < 3:
        return False
    return token in (word + "s", word + "es") or word in (token + "s", token + "es")


def _typo(token: str, word: str) -> bool:
    """``token`` is ``word`` mistyped: same first letter, a word of seven letters or more, and one letter dropped
    ("orchestal", "clasical") or two neighbours swapped ("electornic"). Substitutions and extra letters are not
    tried: among real words they misfire ("calling" is no "calming", "strong" no "string"). Only tried on tokens
    that are no phrase's word and no common word (:data:`COMMON_WORDS`)."""
    n = len(word)
    if n < 7 or len(token) < 6 or token[0] != word[0]:
        return False
    if len(token) == n - 1:
        return any(word[:i] + word[i + 1:] == token for i in range(n))
    if len(token) == n:
        diff = [i for i in range(n) if token[i] != word[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and token[diff[0]] == word[diff[1]] \
            and token[diff[1]] == word[diff[0]]
    return False


def _declined_flags(tokens: Sequence[str]) -> list[bool]:
    """Per word of ``tokens`` (words and clause stops, :func:`_words_and_stops`; the stops get no flag): does a
    negation govern it? "no drums or vocals, just piano" → drums, or, vocals declined. A negator (or a pair:
    "anything but", "too much") declines what follows up to the clause's end, or up to a word that resumes the
    ask once something was declined ("no drums but strings"; "no more drums" declines the drums); "too" declines
    the one word after it ("too dark" is a complaint, not a request)."""
    out, declining, declined_any, too, prev = [], False, False, False, ""
    for tok in tokens:
        if tok in CLAUSE_STOPS:  # not a word: ends the clause, and is dropped from the flags
            declining = too = False
            prev = ""
            continue
        if tok in NEGATORS or (prev, tok) in NEGATOR_PAIRS:
            declining, declined_any, too = True, False, False
            out.append(False)
            prev = tok
            continue
        if tok == "too":
            too = True
            out.append(False)
            prev = tok
            continue
        if declining and declined_any and tok in CLAUSE_RESUME:
            declining = False
        out.append(declining or too)
        declined_any = declined_any or declining
        too, prev = False, tok
    return out


GREETINGS = frozenset([("good", "morning"), ("good", "evening"), ("good", "afternoon"), ("good", "day"),
                       ("morning", "all"), ("evening", "all")])
GREETING_LEAD = frozenset(["hi", "hey", "hello", "and", "a", "very", "oh"])


def greeting_positions(tokens: Sequence[str]) -> set[int]:
    """Positions of a greeting that opens a request ("good evening! something upbeat", "hey, good morning"): it
    asks for no evening or morning music. The same words later on do ("music for a good morning run")."""
    for i in range(min(3, len(tokens) - 1)):
        if (tokens[i], tokens[i + 1]) in GREETINGS and all(t in GREETING_LEAD for t in tokens[:i]):
            return {i, i + 1}
    return set()


# the words of a clause that opens a request as a greeting and asks for nothing ("Hi there.", "Hey, got a sec?",
# "Good evening!", "hello everyone,"): for titles, where a whole greeting clause is skipped; greeting_positions above
# is the concept reader's narrower rule (only "good morning"-like pairs, which would otherwise read as scenes)
OPENING_WORDS = frozenset(["hi", "hii", "hey", "heyy", "hello", "helo", "hiya", "howdy", "yo", "sup", "greetings",
                           "there", "all", "everyone", "again", "good", "morning", "evening", "afternoon", "day",
                           "got", "a", "sec", "second", "minute", "how", "are", "you", "u", "whats", "up", "ok",
                           "okay", "so", "um", "hmm", "oh", "doing", "dj", "sir", "friend", "buddy", "mate", "bot",
                           "hope", "youre", "well", "today"])


def opening_greeting(both: Sequence[str]) -> int:
    """How many words (of :func:`words`) open ``both`` (words and clause stops, :func:`_words_and_stops`) as
    greeting clauses, each ended by a stop: 4 for "Hey, got a sec? Queue up Salcon", 2 for "Hi there. Salcon
    please", 0 for "good battle music" (no stop: the words are the request's)."""
    count = done = 0
    for tok in both:
        if tok in CLAUSE_STOPS:
            done = count
        elif tok in OPENING_WORDS:
            count += 1
        else:
            break
    return done


def undeclined_words(text: str) -> list[str]:
    """The words of ``text`` that no negation governs, negators left out: "orchestral, no drums or vocals" →
    orchestral. The one reading of negation for the whole text match (BM25 and sentence vectors use it too)."""
    both = _words_and_stops(text)
    tokens = [w for w in both if w not in CLAUSE_STOPS]
    return [w for w, declined in zip(tokens, _declined_flags(both))
            if not declined and w not in NEGATORS and w != "too"]


@dataclass(frozen=True)
class Mention:
    """One concept a request names, as this catalog can honour it."""

    concept: str  # Concept.key
    text: str  # the words that named it
    need: tuple[frozenset[str], ...]
    avoid: frozenset[str]
    declined: bool  # "no drums": the listener declined the concept (need/avoid already say what that means)
    named: frozenset[str] = frozenset()  # catalog tags spelled exactly by the words ("synthwave"): carrying one fits

    @property
    def kind(self) -> str:
        return self.concept.split(":", 1)[0]


class IntentReader:
    """The concept table bound to one catalog's tags, and per-track fit scores (see the module docstring).

    ``names``: per track, the words of its title and artist; a track whose name holds all the words of a mention
    fits that mention ("play Battle Theme" must not bury the track called so under battle music's tags). Album
    words are left out: an album named "The Battle for Wesnoth" would make every one of its tracks battle music.
    ``unread``: the positions of a request's words that name an album or artist
    (:meth:`talkplay.facts.FactReader.unread_positions`): no concept reads them ("from UFO: Alien Invasion" asks
    for that game, not for space music).
    """

    def __init__(self, track_tags: Sequence[Iterable[str]], concepts: Sequence[Concept] = CONCEPTS,
                 names: Sequence[Iterable[str]] | None = None, titles: Sequence[str] | None = None,
                 unread: Callable[[Sequence[str]], set[int]] | None = None):
        self.track_tags = [frozenset(t) for t in track_tags]
        # positions of a request's words that no concept reads: an album's or artist's name (talkplay.facts)
        self._unread = unread
        # a title spelled out in full names that track: "play Battle Theme" (two words or more, or one of at least
        # MIN_TITLE_LETTERS letters — "Intro" or "Sad" alone is too likely an ordinary word)
        self._titles: dict[tuple[str, ...], list[int]] = {}
        self._name_words = [frozenset(n) for n in (names or ())]
        for row, title in enumerate(titles or ()):
            w = tuple(words(title))
            if len(w) >= 2 or (len(w) == 1 and len(w[0]) >= MIN_TITLE_LETTERS):
                self._titles.setdefault(w, []).append(row)
        self._title_lengths = sorted({len(w) for w in self._titles})
        vocab = sorted({t for tags in self.track_tags for t in tags})
        self.vocab = frozenset(vocab)
        self._rows: dict[str, np.ndarray] = {t: np.zeros(len(self.track_tags), bool) for t in vocab}
        for row, tags in enumerate(self.track_tags):
            for t in tags:
                self._rows[t][row] = True
        self._name_rows: dict[str, np.ndarray] = {}
        for row, name in enumerate(names or ()):
            for w in set(name):
                self._name_rows.setdefault(w, np.zeros(len(self.track_tags), bool))[row] = True
        self._tag_words = {tuple(words(t)): t for t in vocab}  # a tag as the words a request would spell it with
        covered = {tuple(words(p)) for c in concepts for p in c.phrases}
        own = [Concept(f"tag:{t}", (t.lower(),), (frozenset([t]),)) for t in vocab
               if tuple(words(t)) not in covered]  # a catalog's own tags read as themselves
        # every concept's phrases are read, bound here or not: a concept this catalog cannot honour still owns its
        # words (no other concept, and no typo, takes them); longest first, so "drum and bass" beats "drums"
        self.concepts = [*concepts, *own]
        self._phrases = sorted(((tuple(words(p)), c) for c in self.concepts for p in c.phrases if words(p)),
                               key=lambda pc: -len(pc[0]))
        self._by_first: dict[str, list[tuple[int, tuple[str, ...], Concept]]] = {}
        self._by_letter: dict[str, list[tuple[int, tuple[str, ...], Concept]]] = {}
        for order, (phrase, concept) in enumerate(self._phrases):
            self._by_first.setdefault(phrase[0], []).append((order, phrase, concept))
            self._by_letter.setdefault(phrase[0][:1], []).append((order, phrase, concept))
        self._known = {w for phrase, _ in self._phrases for w in phrase}
        self._known |= {w + "s" for w in self._known} | COMMON_WORDS
        self._read = functools.lru_cache(maxsize=1024)(self._read_uncached)  # a turn reads its request twice
        # a turn asks for its request's named measure up to three times (exclusion, first stage, relative moves)
        self._referenced = functools.lru_cache(maxsize=1024)(self._referenced_uncached)

    def _bind(self, concept: Concept, declined: bool, named: frozenset[str]) -> Mention | None:
        """``concept`` as this catalog can honour it (its tags restricted to the catalog's), or None when it says
        nothing here. Declined, it avoids the tags named and its first need group when that is narrow (≤ 3 tags:
        "no drums" avoids drums, beats, percussive; "nothing sad" avoids no instrument), and asks for its
        ``declined`` tags instead."""
        if concept.key.startswith(NEUTRAL):
            return None
        need = tuple(g & self.vocab for g in concept.need)
        if declined:
            avoid = named | (need[0] if need and len(concept.need[0]) <= 3 else frozenset())
            want = concept.declined & self.vocab
            need = (want,) if want else ()
        else:
            if concept.need and not any(need) and not named:  # asks for what this catalog has none of
                return None
            need = tuple(g for g in need if g)  # a group this catalog cannot meet at all is left out
            avoid = concept.avoid & self.vocab
        if not (need or avoid or named):
            return None
        return Mention(concept.key, "", need, avoid, declined, named)

    def read(self, text: str) -> list[Mention]:
        """The concepts ``text`` names, left to right, each once (its first mention decides declined or not).
        Phrases are matched longest first, exact words before plurals before typos, and a word belongs to at
        most one phrase."""
        return list(self._read(text))

    def _read_uncached(self, text: str) -> tuple[Mention, ...]:
        both = _words_and_stops(text)
        tokens = [w for w in both if w not in CLAUSE_STOPS]
        flags = _declined_flags(both)
        skip = self._unread(tokens) if self._unread is not None else set()
        skip |= greeting_positions(tokens)
        # a title named as the measure ("like Battle Music") says which track, not which concepts: "battle" there
        # asks for nothing
        skip |= {k for start, end, _ in self.references(both) for k in range(start, end)}
        used = [i in skip for i in range(len(tokens))]
        found: dict[str, tuple[int, Mention]] = {}
        for fuzzy in (False, True):
            for *_, i, phrase, concept in sorted(self._candidates(tokens, fuzzy)):
                n = len(phrase)
                if any(used[i:i + n]):
                    continue
                for k in range(n):
                    used[i + k] = True
                said = tuple(tokens[i:i + n])
                named = frozenset(t for t in (self._tag_words.get(phrase), self._tag_words.get(said)) if t)
                bound = self._bind(concept, flags[i], named)
                if bound is None or (concept.key in found and found[concept.key][0] < i):
                    continue
                found[concept.key] = (i, replace(bound, text=" ".join(said)))
        mentions = [m for _, m in sorted(found.values(), key=lambda im: im[0])]
        # "rock but not too heavy", "rock but no metal": what is declined must not rule out all of what is asked
        # for; a group the declined tags would empty keeps its tags, except those the listener named
        avoided = frozenset().union(*(m.avoid for m in mentions if m.declined))
        named = frozenset().union(*(m.named for m in mentions if m.declined))
        keep = frozenset().union(*(g for m in mentions if not m.declined for g in m.need if g <= avoided)) - named
        return tuple(replace(m, avoid=m.avoid - keep) if m.declined else m for m in mentions)

    def _candidates(self, tokens: Sequence[str], fuzzy: bool) -> Iterable[tuple]:
        """(−length, inexact, phrase order, position, phrase, concept) for every phrase that reads at a position:
        exactly, with a plural 's' forgiven, or (``fuzzy``) as a typo of words that are no phrase's or common
        word (see :func:`_typo`). Sorted, longer phrases come first, then exact spellings ("blues" the genre
        before "blue" + s)."""
        for i, tok in enumerate(tokens):
            if not fuzzy:
                keys = {tok, tok + "s", tok + "es", tok[:-1] if tok.endswith("s") else tok,
                        tok[:-2] if tok.endswith("es") else tok}
                starts = [p for key in keys for p in self._by_first.get(key, ())]
            elif tok in self._known or tok.isdigit():
                continue
            else:
                starts = [p for p in self._by_letter.get(tok[:1], ()) if _typo(tok, p[1][0])]
            for order, phrase, concept in starts:
                n = len(phrase)
                if i + n <= len(tokens) and all(self._reads_as(tokens[i + k], phrase[k], fuzzy) for k in range(n)):
                    yield -n, tuple(tokens[i:i + n]) != phrase, order, i, phrase, concept

    def _reads_as(self, token: str, word: str, fuzzy: bool) -> bool:
        if _plural(token, word):
            return True
        return fuzzy and token not in self._known and not token.isdigit() and _typo(token, word)

    def _has_any(self, tags: Iterable[str]) -> np.ndarray:
        return self._count(tags) > 0

    def _count(self, tags: Iterable[str]) -> np.ndarray:
        """float64 (n_tracks,): how many of ``tags`` each track carries."""
        out = np.zeros(len(self.track_tags), np.float64)
        for t in set(tags):
            row = self._rows.get(t)
            if row is not None:
                out += row
        return out

    def _named_by(self, m: Mention) -> np.ndarray:
        """Tracks that carry a tag the mention spells, or whose name holds all of its words."""
        mask = self._has_any(m.named)
        if self._name_rows and not m.declined:
            rows = [self._name_rows.get(w) for w in m.text.split()]
            if all(r is not None for r in rows):
                mask = mask | np.logical_and.reduce(rows)
        return mask

    def references(self, both: Sequence[str]) -> list[tuple[int, int, list[int]]]:
        """(start, end, rows) of every whole title in ``both`` (:func:`_words_and_stops`; start and end count words
        only) that follows a reference cue (REFERENCE_BEFORE, one "the"/"that"/"this" between allowed) and ends its
        clause or comes before REFERENCE_AFTER: "something like Battle Music", "songs similar to Tranquilforest but
        slower" — not "something like the end of a movie" with a track called "The End"."""
        tokens = [w for w in both if w not in CLAUSE_STOPS]
        at = [k for k, w in enumerate(both) if w not in CLAUSE_STOPS]  # a word's position in ``both``
        out = []
        for n in self._title_lengths:
            for i in range(len(tokens) - n + 1):
                rows = self._titles.get(tuple(tokens[i:i + n]))
                if not rows:
                    continue
                j = i - 1 if i > 0 and tokens[i - 1] in ("the", "that", "this") else i
                after = both[at[i + n - 1] + 1] if at[i + n - 1] + 1 < len(both) else None
                if j >= 2 and tokens[j - 2] in REFERENCE_BEFORE.get(tokens[j - 1], ()) and \
                        (after is None or after in CLAUSE_STOPS or after in REFERENCE_AFTER):
                    out.append((i, i + n, list(rows)))
        return out

    def referenced(self, text: str) -> np.ndarray:
        """bool (n_tracks,): the tracks ``text`` names as the measure of what it wants ("something like Battle
        Music": :meth:`references`) — the listener asks for others like them, not for them."""
        out = np.zeros(len(self.track_tags), bool)
        out[list(self._referenced(text))] = True
        return out

    def _referenced_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(sorted({r for _, _, rows in self.references(_words_and_stops(text)) for r in rows}))

    def titled(self, text: str) -> np.ndarray:
        """bool (n_tracks,): the tracks ``text`` asks for by their whole title, spelled as consecutive words.

        The title must be what is asked for: after "play"/"called" ("can you play Battle Theme"), or with nothing
        else said but filler, an opening greeting (:func:`opening_greeting`) and the track's own artist ("Hi there.
        Battle Theme by SuperTux please"). "Something like X",
        "similar to X", "not X" ask for other tracks, and a title inside a longer description ("epic battle music
        with a full orchestra" holding "Battle Music") names nothing."""
        out = np.zeros(len(self.track_tags), bool)
        both = _words_and_stops(text)
        w = [x for x in both if x not in CLAUSE_STOPS]  # words(text), read once with its stops
        opening = opening_greeting(both)  # "Hi there. Bright Thunders please": no other words
        for n in self._title_lengths:
            for i in range(len(w) - n + 1):
                rows = self._titles.get(tuple(w[i:i + n]))
                # a title inside the greeting ("Good morning, play me a song" and a track called Good Morning)
                # greets; one typed after it asks
                if not rows or i + n <= opening or NOT_THE_TITLE.intersection(w[max(0, i - 2):i]):
                    continue
                asked = i > 0 and w[i - 1] in ASK_FOR_TITLE
                rest = [x for j, x in enumerate(w) if (j < i or j >= i + n) and j >= opening and x not in TITLE_FILLER]
                for row in rows:
                    names = self._name_words[row] if row < len(self._name_words) else frozenset()
                    if asked or all(x in names for x in rest):
                        out[row] = True
        return out

    def fit(self, mentions: Sequence[Mention]) -> np.ndarray:
        """float64 (n_tracks,) in [−1, 1]: the mean over ``mentions`` of (share of need groups a track meets − 1
        when it carries an avoided tag), a track carrying a tag the mention spells or named by its words counting
        as meeting it; zeros when there are no mentions. How *fully* it meets them (:data:`GRADED_FIT`: "calm" is
        met by a slow track, better by a quiet, ambient, slow one) is added worth less than one need group, so a
        track that meets every group outranks one that misses any."""
        share = np.zeros(len(self.track_tags), np.float64)
        fullness = np.zeros(len(self.track_tags), np.float64)
        groups = 1
        for m in mentions:
            part = np.zeros(len(self.track_tags), np.float64)
            full = np.zeros(len(self.track_tags), np.float64)
            if m.need:
                for group in m.need:
                    hits = self._count(group)
                    part += hits > 0
                    k = min(len(group), GRADED_FIT_TAGS)
                    full += np.minimum(hits, k) / k
                part /= len(m.need)
                full /= len(m.need)
                groups = max(groups, len(m.need))
            part -= self._has_any(m.avoid)
            if not m.declined:  # what the listener spelled out wins over the concept's other tags
                named = self._named_by(m)
                part[named] = 1.0
                full[named] = 1.0
            share += part
            fullness += full
        if not mentions:
            return share
        # one group fewer costs ≥ 1 / (mentions × groups) of the share: the fullness term's weight stays below it
        delta = GRADED_FIT / (len(mentions) * groups + 1)
        return ((1 - delta) * share + delta * fullness) / len(mentions)

    def fits(self, mentions: Sequence[Mention], row: int) -> bool:
        """Whether track ``row`` meets every need group of every mention and carries no avoided tag (or carries
        a tag a mention spells)."""
        tags = self.track_tags[row]
        return all((not m.declined and tags & m.named) or (all(tags & g for g in m.need) and not tags & m.avoid)
                   for m in mentions)


def concept_problems(concepts: Sequence[Concept] = CONCEPTS) -> list[str]:
    """Mistakes in a concept table: duplicate keys, a phrase owned by two concepts, empty phrases or needs."""
    problems, owner = [], {}
    for c in concepts:
        if not c.need and not c.avoid and not c.key.startswith(NEUTRAL):
            problems.append(f"{c.key}: neither need nor avoid")
        for p in c.phrases:
            key = " ".join(words(p))
            if not key:
                problems.append(f"{c.key}: empty phrase {p!r}")
            elif key in owner and owner[key] != c.key:
                problems.append(f"{c.key}: phrase {p!r} already belongs to {owner[key]}")
            owner.setdefault(key, c.key)
    keys = [c.key for c in concepts]
    problems += [f"duplicate concept key {k}" for k in sorted({k for k in keys if keys.count(k) > 1})]
    return problems
