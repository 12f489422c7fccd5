"""The language of the synthetic conversations: phrasings, slot words, reply frames, held-out split, noise.

This module owns every word the offline generator (``train.data.conversations``) puts into a dialogue:

* **User templates** per group (``"genre"``, ``"faster"``, ``"too_slow"`` …), each group belonging to one
  intent of ``train.data.conversation_schema.INTENTS``. A template's id is ``"<group>.<NN>"``, NN counted
  from 01 in the order written here: **append new phrasings, never reorder or delete**, so ids stay stable.
* **Slot words**: per catalog attribute (``"style:orchestral"``, ``"mood:calm"``, ``"activity:boss-fight"``
  …) the words people use for it, the catalog's own tag first, then words the tags never use
  ("symphonic music", "8-bit music", "laid back"). A slot is satisfied by a track when the track carries
  one tag of each ``need`` set and none of ``avoid``; activities and contexts are slots too.
* **Assistant frames** live in :mod:`train.data.reply_frames` (reply sentences filled only with facts of the
  recommended track).
* **Held-out partition**: ``HELD_OUT_SHARE`` of the templates of every group, and of the alternative
  words of every slot, are reserved for test conversations. The choice is a hash: the items with the
  smallest ``sha256(HELD_OUT_SALT + "|" + id)`` (template id, or ``"<slot key>|<word>"``) are held out,
  ``round(share × n)`` of them (at least one when there are three or more). The canonical word (the
  catalog's tag) is never held out. No held-out item occurs inside any other phrasing, and no template
  spells a slot word outside its slots (``lexicon_problems`` checks both).
* **Noise**: casing changes, dropped punctuation and rare adjacent-letter swaps or deletions, never
  inside protected spans (the track titles and names the user quotes).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.lexicon is a module of the train package: import it, or use python -m")

import hashlib
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from talkplay.refine import DIRECTIONS as REFINE_DIRECTIONS

HELD_OUT_SALT = "talkplay-heldout-v1"  # change it (and say so) to draw a different held-out partition
HELD_OUT_SHARE = 0.2  # share of templates per group and of alternative words per slot held out of training

# ---------------------------------------------------------------- user templates

# group → intent. Placeholders: {style} {mood} {instrument} {tempo} {era} {activity} (slot words),
# {bpm} {year} {title} {artist} {source} (facts of the target track).
GROUP_INTENT: dict[str, str] = {
    "genre": "open_genre", "mood": "open_mood", "instrument": "open_instrument",
    "tempo": "open_tempo", "bpm": "open_tempo", "era": "open_era", "year": "open_era",
    "activity": "open_activity", "track": "specific_track", "track_by": "specific_track",
    "artist": "specific_artist", "source": "specific_artist", "game": "specific_artist",
    "more": "more_like_this",
    "faster": "direction_change", "slower": "direction_change", "livelier": "direction_change",
    "calmer": "direction_change", "darker": "direction_change", "brighter": "direction_change",
    "more_drums": "direction_change", "fewer_drums": "direction_change", "no_drums": "direction_change",
    "reject": "rejection", "too_slow": "rejection", "too_fast": "rejection", "too_intense": "rejection",
    "too_sleepy": "rejection", "too_dark": "rejection", "too_bright": "rejection",
    "too_drummy": "rejection", "too_flat": "rejection", "wrong_style": "rejection", "vocals": "rejection",
    "retry": "rejection", "accept": "acceptance", "chitchat": "chit_chat", "hello": "chit_chat",
}

DIRECTIONS = REFINE_DIRECTIONS  # talkplay.refine owns what each direction means
REASONS = ("too_slow", "too_fast", "too_intense", "too_sleepy", "too_dark", "too_bright", "too_drummy",
           "too_flat", "wrong_style", "vocals")
# A rejection reason about the rejected track, and the direction that leads from it to the wanted one.
REASON_DIRECTION: dict[str, str] = {
    "too_slow": "faster", "too_fast": "slower", "too_intense": "calmer", "too_sleepy": "livelier",
    "too_dark": "brighter", "too_bright": "darker", "too_drummy": "fewer_drums", "too_flat": "more_drums",
}

_USER: dict[str, tuple[str, ...]] = {
    "genre": (
        "Play some {style}.", "I'm in the mood for {style}.", "Got any {style}?", "Can you recommend {style}?",
        "Put on some {style}, please.", "I want to hear {style}.", "What do you have in terms of {style}?",
        "Looking for {style} right now.", "Hit me with some {style}.", "Could you find me {style}?",
        "Any good {style} in here?", "I've been craving {style} lately.", "Let's do {style}.",
        "Recommend me some {mood} {style}.", "Something {mood}, maybe {style}?", "{style}, please. Ideally {mood}.",
        "Start me off with {style}.", "Do you know any {style} I might like?", "I need {style} in my ears.",
        "Find me {mood} {style}.",
    ),
    "mood": (
        "Play something {mood}.", "I need something {mood}.", "Got anything {mood}?",
        "Can you put on some {mood} music?", "I'm in the mood for something {mood}.", "Give me {mood} music.",
        "Something {mood}, please.", "What's a good {mood} track?", "I want the music to feel {mood}.",
        "Set the mood: {mood}, please.", "Looking for {mood} tunes.", "Make it {mood}.",
        "Anything {mood} you'd recommend?", "Can I get something {mood} and {tempo}?",
        "Play me something really {mood}.", "I'd love to hear something {mood} right now.",
    ),
    "instrument": (
        "Something with {instrument}, please.", "I'd love to hear some {instrument}.",
        "Play me something featuring {instrument}.", "Any tracks with {instrument}?", "I'm craving {instrument}.",
        "Got anything built around {instrument}?", "Can you find a track with {instrument} in it?",
        "Looking for music with {instrument}.", "Put on something that has {instrument}.",
        "I want {instrument} front and center.", "Some {style} with {instrument}, maybe?",
        "Recommend something where I can hear {instrument}.", "Is there anything with {instrument} in your library?",
        "Find me something {tempo} with {instrument}.",
    ),
    "tempo": (
        "Play something {tempo}.", "I need something {tempo}.", "Got anything {tempo}?",
        "Something {tempo}, please.", "Can you put on a track that's {tempo}?",
        "I'm after something {tempo} right now.", "Let's go {tempo}.", "I want it {tempo}.",
        "Looking for {tempo} music.", "Anything {tempo} in the {style} department?", "Play me some {tempo} {style}.",
        "What do you have that's {tempo}?",
    ),
    "bpm": (
        "Something around {bpm} BPM?", "I need a track near {bpm} BPM.", "Got anything at roughly {bpm} BPM?",
        "Can you find me something at {bpm}-ish BPM?", "Looking for about {bpm} BPM.", "Tempo around {bpm}, please.",
    ),
    "era": (
        "Something from {era}?", "Play me a track from {era}.", "What do you have from {era}?",
        "I'm feeling nostalgic for {era}.", "Anything released in {era}?", "Give me something made in {era}.",
        "I'd like music from {era}.", "Got any {style} from {era}?", "Take me back to {era}.",
        "Let's hear something that came out in {era}.", "Something recorded in {era}, please.",
        "Any {mood} tracks from {era}?",
    ),
    "year": (
        "Anything from {year}?", "Play something released in {year}.", "What came out in {year}?",
        "I want a track from {year}.", "Got any {style} from {year}?", "Something made in {year}, please.",
    ),
    "activity": (
        "I need music for {activity}.", "What would you play for {activity}?", "Got anything good for {activity}?",
        "Help me soundtrack {activity}.", "Something that fits {activity}, please.",
        "Looking for a track for {activity}.", "What goes well with {activity}?", "Set the vibe for {activity}.",
        "Pick something for {activity}.", "I'm getting ready for {activity}. Any ideas?",
        "Perfect music for {activity}?", "Recommend a track for {activity}.", "I need a backdrop for {activity}.",
        "Music for {activity}, go!",
    ),
    "track": (
        "Play {title}.", "Can you put on {title}?", "I want to hear {title}.", "Do you have {title}?",
        "Play “{title}”, please.", "Let's hear {title}.", "Queue up {title}.", "{title}, please!",
        "Could you play the track called {title}?", "I've had {title} stuck in my head. Play it?",
        "Is {title} in there? Put it on.", 'Put on "{title}".',
    ),
    "track_by": (
        "Play {title} by {artist}.", "Can you find {title} by {artist}?", "I'm looking for {title} from {artist}.",
        "Put on “{title}” by {artist}.", "Do you have {title} by {artist}?", "Queue {title} by {artist}, please.",
    ),
    "artist": (
        "Play something by {artist}.", "Any tracks by {artist}?", "I'd like to hear some {artist}.",
        "What do you have from {artist}?", "Got anything from {artist}?", "Put on a track by {artist}.",
        "I'm a fan of {artist}. Play one of theirs?", "Something from {artist}, please.", "Let's hear {artist}.",
        "Can you play one of the tracks by {artist}?", "Play me a piece by {artist}.",
        "I've been getting into {artist}. Play something?",
    ),
    "source": (
        "Play something from {source}.", "Any music from {source}?", "I loved the music in {source}. Got any?",
        "Put on a track from {source}.", "Something off {source}, please.", "What do you have from {source}?",
        "I want to hear a piece from {source}.", "Got anything from {source}?",
        "I'm nostalgic for {source}. Play something from it?", "A track from {source}, please.",
    ),
    "game": (
        "Something from the {source} soundtrack?", "Play a track off the {source} soundtrack.",
        "I miss playing {source}. Got its music?", "Any tunes from the game {source}?",
        "Put on some of the {source} soundtrack.", "I loved the soundtrack of {source}. Play a piece?",
    ),
    "more": (
        "More like this, please.", "Another one like that.", "Same vibe, please.", "Keep that vibe going.",
        "More in this style?", "Can I get something similar?", "One more like it.",
        "Give me another in the same vein.", "Something along those lines again.", "Keep 'em coming, same style.",
        "More of this, please.", "Similar stuff next?", "Stay in this lane.",
        "Don't change a thing. Another like that.",
    ),
    "faster": (
        "Something faster, please.", "Can we pick up the pace?", "A bit quicker next?", "Speed it up a little.",
        "Let's go faster.", "Same idea, but with more tempo.", "Crank up the tempo.", "Next one faster?",
        "More speed, please.",
    ),
    "slower": (
        "Something slower, please.", "Can we ease up on the pace?", "Bring the tempo down a notch.",
        "A bit slower next?", "Let's take it slower.", "Ease off the tempo.", "Slower, please.",
        "Next one a little less rushed?", "Dial back the speed.",
    ),
    "livelier": (
        "Something with more energy?", "More energy, please.", "Can you pump it up a bit?", "Liven things up.",
        "I need more oomph.", "Something punchier next.", "Bring the energy up.", "Make the next one livelier.",
        "Let's get more fired up.",
    ),
    "calmer": (
        "Something calmer, please.", "Tone it down a bit.", "Can we take it down a notch?", "Less busy next?",
        "Something more relaxed.", "Bring the energy down.", "Softer, please.", "A bit gentler?",
        "Let's wind down a little.",
    ),
    "darker": (
        "Something darker?", "Go darker.", "Can we get moodier?", "Take it somewhere darker.",
        "Less sunny next time.", "I want something gloomier.", "Darker vibes, please.",
        "Something with a deeper, murkier sound?",
    ),
    "brighter": (
        "Something brighter?", "Lighten it up a bit.", "Less gloomy-sounding, please.",
        "Something with a brighter sound?", "Can we go brighter?", "More sparkle next?", "A sunnier sound, please.",
        "Something lighter in tone?",
    ),
    "more_drums": (
        "More percussion, please.", "Something with a stronger beat?", "Bring in some percussion.",
        "Heavier on the percussion next?", "I want more rhythm.", "Can we get more of a groove going?",
        "Something with more drum work?",
    ),
    "fewer_drums": (
        "Less percussion, please.", "Tone down the drum work.", "Something with lighter percussion?",
        "Ease off the percussion.", "Can we lose some of the rhythm section?", "Less drum-heavy next?",
    ),
    "no_drums": (
        "Something without percussion?", "No drum kit this time.", "Can I get something with zero percussion?",
        "Drop the percussion entirely.", "Nothing with a drum kit next, please.",
        "Just no percussion at all this time.",
    ),
    "reject": (
        "Nah.", "Hmm, not this one.", "Not quite.", "Skip.", "No thanks.", "Meh.", "Not for me.",
        "I don't like this one.", "Pass.", "Ugh, no.", "Not feeling it.", "Nope.", "Eh, not really.",
        "That's not it.",
    ),
    "too_slow": (
        "It's too sluggish.", "Way too plodding.", "It needs more pace.", "It drags.", "The tempo's too low.",
        "It crawls along.",
    ),
    "too_fast": (
        "It's too frantic.", "Way too hectic.", "Too rushed for me.", "That's too rapid for me.",
        "The tempo's too high.", "It races by too much.",
    ),
    "too_intense": (
        "It's too much.", "Way too busy and forceful.", "Too aggressive for right now.", "A bit overwhelming.",
        "Too hyper for me.", "It's a lot.",
    ),
    "too_sleepy": (
        "It's too sleepy.", "Too low-energy.", "Kind of boring, it needs more energy.", "Not enough energy.",
        "Too drowsy for me.", "It's a bit lifeless.",
    ),
    "too_dark": (
        "It's too somber.", "Way too grim.", "Too murky.", "Too bleak for me.", "A bit too heavy and dim.",
        "It sounds too muffled and grim.",
    ),
    "too_bright": (
        "It's too harsh.", "Too shrill.", "Too tinny for me.", "A bit harsh on the highs.", "Too glaring.",
        "Way too piercing.",
    ),
    "too_drummy": (
        "Too much drumming.", "The percussion is too much.", "Too busy on percussion.", "Too rhythm-heavy for me.",
        "The percussion is overwhelming.", "Too much going on rhythmically.",
    ),
    "too_flat": (
        "It needs more of a beat.", "There's no groove.", "I want some percussion in it.", "Too little rhythm.",
        "It's missing a beat.", "It needs a rhythm section.",
    ),
    "wrong_style": (
        "I'm not in the mood for {style}.", "Not really feeling {style} right now.", "{style} isn't my thing today.",
        "Too much like {style} for me.", "I'd rather skip {style} for now.", "Not {style}, please.",
    ),
    "vocals": (
        "I'd rather have no singing.", "The singing distracts me.", "Can we avoid singers?",
        "I prefer instrumentals right now.", "Not a fan of the singing.", "Too much voice in it.",
    ),
    "retry": (
        "Try another?", "Something else, please.", "Got anything else?", "Next one.", "Let's try again.",
        "What else do you have?", "Another option?", "Give me something different.",
    ),
    "accept": (
        "Love it!", "Oh nice, this is great.", "Yes, perfect.", "That one's a keeper.", "Great pick!",
        "Ooh, I like this.", "Nice, adding it to my list.", "This is so good.", "Good one!",
        "Exactly what I needed.", "Not bad at all!", "Solid choice.", "Perfect, thanks!", "Okay, this is awesome.",
        "Yes! More of these, please.", "Wow, that's great.",
    ),
    "chitchat": (
        "I just got home from work.", "It's pouring rain here.", "I'm making pancakes right now.",
        "My roommate keeps humming game tunes.", "Long day, honestly.", "I just finished a big exam!",
        "I'm hosting friends tonight.", "I'm painting miniatures this evening.", "My cat is asleep on my desk.",
        "I finally finished my thesis draft.", "It's my day off.", "I'm stuck on a puzzle level.",
        "Just back from a walk.", "I'm reorganizing my bookshelf.", "Coffee number three for me.",
        "I can't decide what to do tonight.",
    ),
    "hello": (
        "Hey!", "Hi there.", "Hello!", "Hey, got a sec?", "Good evening!", "Hi!", "Howdy.", "Hey there!",
    ),
}

# ---------------------------------------------------------------- slot words


@dataclass(frozen=True)
class Slot:
    """One attribute people ask for, the words they use for it, and the tags that make it true."""

    key: str  # "<kind>:<name>", kind = the template placeholder it fills
    words: tuple[str, ...]  # the first is canonical (the catalog's own word) and never held out
    need: tuple[frozenset[str], ...] = ()  # the track carries ≥ 1 tag of each set
    avoid: frozenset[str] = frozenset()  # … and none of these

    @property
    def kind(self) -> str:
        return self.key.split(":", 1)[0]

    def satisfied_by(self, tags: frozenset[str]) -> bool:
        return all(tags & s for s in self.need) and not tags & self.avoid


def _s(key: str, words: str, need: Iterable[Iterable[str]] | str = (), avoid: str = "") -> Slot:
    """Compact constructor: words '|'-separated; a plain string ``need`` is one ','-separated set."""
    sets = (need,) if isinstance(need, str) else tuple(need)
    need_sets = tuple(frozenset(x.split(",") if isinstance(x, str) else x) for x in sets if x)
    return Slot(key, tuple(words.split("|")), need_sets, frozenset(avoid.split(",")) if avoid else frozenset())


_SLOTS: tuple[Slot, ...] = (
    # styles (noun phrases: "play some ___")
    _s("style:orchestral", "orchestral music|symphonic music|orchestra stuff|film-score vibes|"
       "big orchestral pieces|symphonic stuff|full-orchestra tracks", "orchestral"),
    _s("style:cinematic", "cinematic music|movie-trailer music|epic movie music|blockbuster-style music|"
       "cinematic soundscapes", "cinematic"),
    _s("style:classical", "classical music|classical pieces|concert-hall music|old-school classical|"
       "classical-sounding stuff", "classical"),
    _s("style:electronic", "electronic music|electronica|electro stuff|computer-made music|EDM-ish stuff|"
       "electronic tracks", "electronic"),
    _s("style:ambient", "ambient music|ambient soundscapes|drone-y background music|ambient textures|"
       "background ambience", "ambient"),
    _s("style:techno", "techno|techno tracks|club techno|four-on-the-floor stuff|warehouse techno", "techno"),
    _s("style:chiptune", "chiptune|chiptunes|8-bit music|bleepy retro game music|NES-style tunes|"
       "Game Boy-sounding music", "chiptune,8-bit"),
    _s("style:retro", "retro music|throwback tunes|retro-sounding stuff", "retro"),
    _s("style:rock", "rock|rock music|riff-driven rock|rock stuff|rock tracks", "rock"),
    _s("style:metal", "metal|heavy metal|headbanging music|metal stuff|shred-heavy metal", "metal"),
    _s("style:folk", "folk music|folk tunes|folky stuff|campfire folk|traditional folk", "folk"),
    _s("style:medieval", "medieval music|medieval tunes|knights-and-castles music|olde-worlde music|"
       "castle-era music", "medieval"),
    _s("style:fantasy", "fantasy music|high-fantasy music|elves-and-dragons music|sword-and-sorcery music|"
       "fantasy soundtracks", "fantasy"),
    _s("style:sci-fi", "sci-fi music|science fiction music|space music|futuristic music|spaceship music",
       "sci-fi"),
    _s("style:pop", "pop|pop music|poppy stuff|catchy pop tunes", "pop"),
    _s("style:dance", "dance music|dancefloor stuff|club bangers|dance tracks", "dance"),
    _s("style:experimental", "experimental music|weird experimental stuff|avant-garde stuff|out-there music",
       "experimental"),
    _s("style:acoustic", "acoustic music|unplugged stuff|acoustic tunes|acoustic instrumentals", "acoustic"),
    _s("style:soundtrack", "soundtrack music|game soundtrack music|VGM|OST material|video game scores",
       "soundtrack"),
    _s("style:jazz", "jazz|jazzy stuff|jazz tunes", "jazz"),
    # moods (adjectives: "something ___")
    _s("mood:calm", "calm|chill|mellow|laid back|relaxing|soothing|peaceful|low-key", "calm,chill,quiet",
       "energetic,loud"),
    _s("mood:energetic", "energetic|upbeat|hype|pumped up|high-energy|lively|full-throttle", "energetic",
       "calm,chill,quiet"),
    _s("mood:dark", "dark|moody|brooding|gloomy|ominous|sinister", "dark"),
    _s("mood:bright", "bright|shimmering|sparkly|airy|crisp-sounding", "bright"),
    _s("mood:playful", "playful|fun|cheerful|bouncy|whimsical|goofy", "playful"),
    _s("mood:romantic", "romantic|tender|heartfelt|sentimental|swoony", "romantic"),
    _s("mood:atmospheric", "atmospheric|immersive|spacious|enveloping", "atmospheric"),
    _s("mood:action", "action-packed|intense|adrenaline-fueled|high-stakes", "action"),
    _s("mood:adventurous", "adventurous|exploratory|wanderlust-y|questing", "exploration"),
    _s("mood:loud", "loud|cranked-up|in-your-face|blaring", "loud"),
    _s("mood:drumless", "drumless|beatless|beat-free|drum-free", "drumless"),
    # instruments (noun phrases: "something with ___")
    _s("instrument:piano", "piano|keys|piano melodies|piano parts|tinkling keys", "piano"),
    _s("instrument:strings", "strings|string sections|lush strings|bowed strings", "strings,violin,cello"),
    _s("instrument:violin", "violin|fiddle|violin lines|violin melodies", "violin"),
    _s("instrument:cello", "cello|cello lines", "cello"),
    _s("instrument:synth", "synths|synthesizers|synth pads|analog synths|synth leads", "synth"),
    _s("instrument:guitar", "guitar|guitars|six-string|guitar riffs|guitar work", "guitar"),
    _s("instrument:drums", "drums|beats|big drums|pounding drums|heavy drumming", "drums,beats,percussive"),
    _s("instrument:flute", "flute|flutes|woodwinds|flute melodies|pipes", "flute"),
    _s("instrument:vocals", "female vocals|female vocalists|women singing|female singing", "female vocals"),
    # tempo (adjectives)
    _s("tempo:slow", "slow|slow-paced|downtempo|unhurried|leisurely|slowed-down", "slow"),
    _s("tempo:mid", "mid-tempo|medium-tempo|moderately paced|medium-paced|steady-paced", "mid-tempo"),
    _s("tempo:fast", "fast|uptempo|quick|fast-paced|high-tempo|speedy|zippy", "fast"),
    # activities and contexts (noun phrases: "music for ___"); need/avoid are the attribute constraints
    _s("activity:boss-fight", "a boss fight|the final boss|a raid boss|a big showdown|a climactic boss battle",
       ("energetic,action,loud,metal", "fast,percussive,drums"), "calm,chill,quiet,slow"),
    _s("activity:studying", "studying|homework|deep work|cramming for exams|focusing at my desk",
       ("ambient,calm,chill,quiet,drumless,piano",), "energetic,loud,metal,fast,percussive,action"),
    _s("activity:night-drive", "a late-night drive|driving at night|a midnight drive|"
       "cruising the highway at 2am|a night drive through the city",
       ("electronic,synth,techno", "mid-tempo,fast"), "playful,medieval,folk,calm"),
    _s("activity:tabletop", "a D&D session|my tabletop RPG night|a Dungeons & Dragons campaign|"
       "running a fantasy campaign|game night with my D&D group", ("fantasy,medieval,folk",),
       "sci-fi,techno,chiptune"),
    _s("activity:workout", "a workout|the gym|lifting weights|my morning run|a HIIT session|cardio",
       ("energetic", "fast,percussive,beats,drums"), "calm,slow,quiet,drumless"),
    _s("activity:sleep", "falling asleep|bedtime|winding down at night|drifting off|a nap",
       ("calm,chill,quiet,ambient", "slow,drumless,calm,quiet"),
       "energetic,loud,fast,percussive,metal,action,drums,beats"),
    _s("activity:dungeon", "exploring a creepy dungeon|a haunted castle level|sneaking through a cave|"
       "a horror game night", ("dark", "ambient,atmospheric,exploration,cinematic"), "playful,pop,bright"),
    _s("activity:space", "stargazing|floating through space|a space exploration game|a long space voyage",
       ("sci-fi", "ambient,atmospheric,exploration,calm,chill"), "metal,playful"),
    _s("activity:retro-gaming", "a retro gaming night|playing old console games|a pixel-art game jam|"
       "speedrunning old platformers", ("chiptune,8-bit,retro",)),
    _s("activity:feast", "a medieval feast|a tavern scene|a village festival|a bard's performance",
       ("medieval,folk", "acoustic,flute,guitar,playful,folk"), "dark,sci-fi,electronic"),
    _s("activity:party", "a party|a house party|pre-drinks|a dance-off with friends",
       ("dance,pop,techno", "energetic"), "slow,calm,dark"),
    _s("activity:coding", "coding|programming|a hackathon|debugging late at night",
       ("electronic,ambient,synth",), "loud,metal,fast,action"),
    _s("activity:epic-battle", "an epic battle scene|a big siege|marching into war|a strategy game siege",
       ("orchestral,cinematic", "energetic,action,percussive,loud"), "calm,chill,playful"),
    _s("activity:rainy-day", "a rainy afternoon|reading a book|a cozy evening with tea|journaling",
       ("piano,strings,acoustic,classical,violin",), "energetic,loud,metal,fast,techno,percussive"),
    _s("activity:chores", "cleaning the house|cooking dinner|doing chores|folding laundry",
       ("playful,pop",), "dark,slow"),
)

# Eras: decades and their early / mid / late thirds, noun phrases after "from".
_DECADE_NAMES = {1990: ("the nineties", "the '90s"), 2000: ("the noughties", "the aughts", "the two-thousands"),
                 2010: ("the twenty-tens", "the '10s", "the 2010-2019 stretch"),
                 2020: ("the twenty-twenties", "the 2020s so far")}
_PART_NAMES = {1990: ("nineties",), 2000: ("noughties", "aughts"), 2010: ("twenty-tens",), 2020: ("twenty-twenties",)}
_PARTS = (("early", 0, 3), ("mid", 4, 6), ("late", 7, 9))


def _era_slots() -> tuple[Slot, ...]:
    out = []
    for decade, names in _DECADE_NAMES.items():
        out.append(Slot(f"era:{decade}s", (f"the {decade}s", *names)))
        for part, lo, hi in _PARTS:
            sep = " " if part != "mid" else "-"
            words = (f"the {part} {decade}s", *(f"the {part}{sep}{n}" for n in _PART_NAMES[decade]))
            out.append(Slot(f"era:{part}-{decade}s", words))
    return tuple(out)


SLOTS: dict[str, Slot] = {s.key: s for s in (*_SLOTS, *_era_slots())}
SLOT_KINDS = ("style", "mood", "instrument", "tempo", "era", "activity")


def era_keys(year: int | None) -> tuple[str, ...]:
    """The era slots true of a release year (its decade and its third of the decade)."""
    if year is None:
        return ()
    decade = year // 10 * 10
    if f"era:{decade}s" not in SLOTS:
        return ()
    part = next(p for p, lo, hi in _PARTS if lo <= year % 10 <= hi)
    return f"era:{decade}s", f"era:{part}-{decade}s"


def slot_keys(tags: Iterable[str], year: int | None = None) -> dict[str, tuple[str, ...]]:
    """kind → the slot keys a track with these tags (and release year) satisfies, in lexicon order."""
    tagset = frozenset(tags)
    out: dict[str, list[str]] = {k: [] for k in SLOT_KINDS}
    for slot in _SLOTS:
        if slot.satisfied_by(tagset):
            out[slot.kind].append(slot.key)
    out["era"] = list(era_keys(year))
    return {k: tuple(v) for k, v in out.items()}


# ---------------------------------------------------------------- templates and the held-out partition


@dataclass(frozen=True)
class Template:
    """One user phrasing."""

    id: str  # "<group>.<NN>", stable: NN is the 1-based position in the group as written
    group: str  # key of GROUP_INTENT
    text: str  # with {slot} placeholders
    held_out: bool  # reserved for test conversations
    slots: tuple[str, ...]  # the placeholders, in order

    @property
    def intent(self) -> str:
        return GROUP_INTENT[self.group]


def placeholders(text: str) -> tuple[str, ...]:
    """The {slot} names of a template or frame, in order."""
    return tuple(f[1] for f in string.Formatter().parse(text) if f[1])


def _rank(item: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{HELD_OUT_SALT}|{item}".encode()).digest()[:8], "big")


def _held_count(n: int) -> int:
    return max(1, round(HELD_OUT_SHARE * n)) if n >= 3 else 0


def _build_templates() -> dict[str, tuple[Template, ...]]:
    out = {}
    for group, texts in _USER.items():
        ids = [f"{group}.{i:02d}" for i in range(1, len(texts) + 1)]
        held = set(sorted(ids, key=_rank)[: _held_count(len(ids))])
        out[group] = tuple(Template(i, group, t, i in held, placeholders(t)) for i, t in zip(ids, texts))
    return out


def _build_held_words() -> dict[str, frozenset[str]]:
    out = {}
    for key, slot in SLOTS.items():
        alternates = slot.words[1:]
        k = _held_count(len(slot.words)) if len(alternates) >= 2 else 0
        out[key] = frozenset(sorted(alternates, key=lambda w: _rank(f"{key}|{w}"))[:k])
    return out


TEMPLATES: dict[str, tuple[Template, ...]] = _build_templates()
TEMPLATE_BY_ID: dict[str, Template] = {t.id: t for ts in TEMPLATES.values() for t in ts}
HELD_WORDS: dict[str, frozenset[str]] = _build_held_words()
HELD_TEMPLATE_IDS: frozenset[str] = frozenset(i for i, t in TEMPLATE_BY_ID.items() if t.held_out)


_BY_SIDE = {(g, h): tuple(t for t in ts if t.held_out == h) for g, ts in TEMPLATES.items() for h in (False, True)}


def templates(group: str, held_out: bool) -> tuple[Template, ...]:
    """The group's held-out templates (``held_out=True``) or its training ones."""
    try:
        return _BY_SIDE[group, held_out]
    except KeyError:
        raise KeyError(f"no template group {group!r} in train.data.lexicon") from None


def words(key: str, held_out: bool) -> tuple[str, ...]:
    """The slot's held-out words (``held_out=True``) or its training ones (always incl. the canonical)."""
    try:
        slot = SLOTS[key]
    except KeyError:
        raise KeyError(f"no slot {key!r} in train.data.lexicon") from None
    held = HELD_WORDS[key]
    return tuple(w for w in slot.words if (w in held) == held_out)


def held_out_phrases() -> dict[str, frozenset[str]]:
    """Slot key → its held-out words (for checks and statistics)."""
    return {k: v for k, v in HELD_WORDS.items() if v}


def _phrase_pattern(phrase: str) -> str:
    # Boundaries treat hyphens and apostrophes as part of a word: "fast" is not found in "fast-paced".
    return r"(?<![\w'-])" + re.escape(phrase.lower()) + r"(?![\w'-])"


@cache
def _slot_regex() -> tuple[re.Pattern, dict[str, str]]:
    owner = {w.lower(): key for key, slot in SLOTS.items() for w in slot.words}
    alternation = "|".join(_phrase_pattern(w) for w in sorted(owner, key=len, reverse=True))
    return re.compile(alternation), owner


def find_slot_words(text: str) -> list[tuple[str, str]]:
    """(slot key, word) for every slot word in ``text``, longest match first, left to right."""
    pattern, owner = _slot_regex()
    return [(owner[m.group(0)], m.group(0)) for m in pattern.finditer(text.lower())]


def lexicon_problems() -> list[str]:
    """Everything that would break the generator's guarantees; [] when the lexicon is sound."""
    problems = []
    known = {"style", "mood", "instrument", "tempo", "era", "activity", "bpm", "year", "title", "artist", "source"}
    seen_words: dict[str, str] = {}
    for key, slot in SLOTS.items():
        for w in slot.words:
            if w.lower() in seen_words and seen_words[w.lower()] != key:
                problems.append(f"slot word {w!r} belongs to {seen_words[w.lower()]!r} and {key!r}")
            seen_words[w.lower()] = key
    texts = {}
    for group, ts in TEMPLATES.items():
        if group not in GROUP_INTENT:
            problems.append(f"template group {group!r} has no intent")
        if len(ts) >= 3 and not any(t.held_out for t in ts):
            problems.append(f"template group {group!r} holds nothing out")
        for t in ts:
            if set(t.slots) - known:
                problems.append(f"template {t.id} has unknown slots {sorted(set(t.slots) - known)}")
            if t.text in texts:
                problems.append(f"template {t.id} repeats {texts[t.text]}")
            texts[t.text] = t.id
            literal = re.sub(r"\{\w+\}", "|", t.text)
            for key, w in find_slot_words(literal):
                problems.append(f"template {t.id} spells slot word {w!r} of {key!r} outside a slot")
    for key, slot in SLOTS.items():  # a typo that breaks one word of a slot phrase may leave another readable
        for w in slot.words:
            toks = w.split()
            broken = (" ".join(toks[:i]) + " # " + " ".join(toks[i + 1:]) for i in range(len(toks)))
            inner = {k for text in broken for k, _ in find_slot_words(text)}
            if inner - {key}:
                problems.append(f"slot word {w!r} ({key}) contains a slot word of {sorted(inner - {key})}")
    held = [(k, w) for k, ws in HELD_WORDS.items() for w in ws]
    for key, slot in SLOTS.items():
        for w in slot.words:
            for hk, hw in held:
                if (hk, hw) != (key, w) and re.search(_phrase_pattern(hw), w.lower()):
                    problems.append(f"held-out word {hw!r} ({hk}) occurs inside slot word {w!r} ({key})")
    return problems

