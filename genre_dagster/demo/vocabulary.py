"""Topic vocabularies of the demo world: MIND's categories, their subcategories and the words
that carry each topic, plus the generic words and templates shared by all topics.

Words are written as `|`-separated strings to keep the tables readable; entities are
`surface:type` with MIND's entity types (P person, O organization, G place, C creative work).
People are fictional; leagues, companies and places are real so the text reads like news.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entity:
    """A named entity that may appear in a headline or abstract."""

    surface: str
    type: str


@dataclass(frozen=True)
class Subcategory:
    """A subcategory: its share within the category and its own topical words."""

    name: str
    share: float
    nouns: tuple[str, ...]
    entities: tuple[Entity, ...]


@dataclass(frozen=True)
class Category:
    """A MIND category: its share of news and words shared by its subcategories."""

    name: str
    share: float
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    subcategories: tuple[Subcategory, ...]


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split("|") if w.strip())


def _entities(text: str) -> tuple[Entity, ...]:
    out = []
    for item in _words(text):
        surface, _, kind = item.rpartition(":")
        out.append(Entity(surface, kind))
    return tuple(out)


def _sub(name: str, share: float, nouns: str, entities: str) -> Subcategory:
    return Subcategory(name, share, _words(nouns), _entities(entities))


def _cat(
    name: str, share: float, verbs: str, adjectives: str, nouns: str, *subs: Subcategory
) -> Category:
    return Category(name, share, _words(verbs), _words(adjectives), _words(nouns), subs)


CATEGORIES: tuple[Category, ...] = (
    _cat(
        "news",
        0.24,
        "unveils|passes|blocks|rejects|approves|investigates|announces|debates|delays|signs"
        "|challenges|defends",
        "controversial|bipartisan|sweeping|urgent|landmark|disputed|local|federal",
        "lawmakers|officials|investigation|hearing|policy|residents|community|authorities",
        _sub(
            "newsus",
            0.30,
            "city council|school board|county sheriff|state budget|public library|highway project"
            "|water supply|housing plan|transit agency|town hall meeting|fire department"
            "|voter turnout",
            "Mayor Linda Okafor:P|Governor Tom Reyes:P|Sheriff Dale Whitman:P|FEMA:O"
            "|Department of Transportation:O|National Guard:O|Census Bureau:O|Red Cross:O",
        ),
        _sub(
            "newspolitics",
            0.25,
            "senate vote|campaign trail|primary election|spending bill|impeachment inquiry"
            "|debate stage|polling numbers|filibuster|executive order|congressional district"
            "|ballot measure|swing voters",
            "Senator Grace Holloway:P|Congressman Victor Alvarez:P|Speaker Ruth Donnelly:P"
            "|White House:O|Senate:O|House of Representatives:O|Supreme Court:O|Democrats:O"
            "|Republicans:O",
        ),
        _sub(
            "newsworld",
            0.20,
            "peace talks|ceasefire|trade summit|embassy|refugee crisis|border dispute"
            "|foreign minister|sanctions|diplomatic visit|coalition government"
            "|United Nations resolution|election abroad",
            "United Nations:O|NATO:O|European Union:O|Prime Minister Elena Marchetti:P"
            "|President Kwame Asante:P|Beijing:G|Brussels:G|Kyiv:G|Mexico City:G|Bogotá:G",
        ),
        _sub(
            "newscrime",
            0.15,
            "arrest|murder trial|police chase|robbery suspect|jury verdict|shooting|fraud charges"
            "|prison sentence|homicide investigation|stolen car|court hearing|bail",
            "FBI:O|District Attorney Mark Feeney:P|Detective Sara Lindqvist:P"
            "|Police Chief Omar Haddad:P|State Police:O|Judge Helen Park:P",
        ),
        _sub(
            "newsscienceandtechnology",
            0.10,
            "space telescope|rocket launch|artificial intelligence|data breach|quantum computer"
            "|climate study|fossil discovery|smartphone app|robot|vaccine research|satellite"
            "|cyberattack",
            "NASA:O|SpaceX:O|Google:O|Microsoft:O|Apple:O|Dr. Priya Natarajan:P|MIT:O|Mars:G",
        ),
    ),
    _cat(
        "sports",
        0.16,
        "beats|defeats|stuns|edges|routs|signs|trades|extends|benches|waives|clinches|rallies past",
        "dominant|late|clutch|stunning|injured|rookie|veteran|unbeaten",
        "season|coach|playoffs|fans|injury report|roster|comeback|rivalry|championship|win streak",
        _sub(
            "football_nfl",
            0.30,
            "quarterback|touchdown|Super Bowl run|wide receiver|field goal|interception"
            "|offensive line|draft pick|head coach|sack|red zone|two-minute drill",
            "Kansas City Chiefs:O|Dallas Cowboys:O|Green Bay Packers:O|Philadelphia Eagles:O"
            "|NFL:O|Jalen Brooks:P|Tyrell Whitaker:P|Coach Bill Harmon:P",
        ),
        _sub(
            "basketball_nba",
            0.20,
            "three-pointer|point guard|triple-double|slam dunk|free throw|rebound|fast break"
            "|buzzer-beater|sixth man|trade deadline|jump shot|bench unit",
            "Los Angeles Lakers:O|Boston Celtics:O|Golden State Warriors:O|Milwaukee Bucks:O"
            "|NBA:O|Darius Coleman:P|Andre Fontaine:P",
        ),
        _sub(
            "baseball_mlb",
            0.15,
            "home run|pitcher|spring training|bullpen|strikeout|batting average|shortstop"
            "|grand slam|no-hitter|dugout|outfielder|inning",
            "New York Yankees:O|Los Angeles Dodgers:O|Chicago Cubs:O|Boston Red Sox:O|MLB:O"
            "|Mateo Salazar:P|Kenji Watanabe:P",
        ),
        _sub(
            "soccer",
            0.15,
            "penalty kick|striker|goalkeeper|transfer window|stoppage time|hat trick|midfielder"
            "|relegation fight|World Cup qualifier|free kick|clean sheet|red card",
            "Manchester United:O|Real Madrid:O|FC Barcelona:O|Inter Miami:O|MLS:O|FIFA:O"
            "|Lucas Moreau:P|Diego Ferreira:P|Zoë Achterberg:P",
        ),
        _sub(
            "golf",
            0.10,
            "birdie|putt|fairway|tee shot|final round|bogey|green jacket|leaderboard|eagle"
            "|caddie|major championship|playoff hole",
            "PGA Tour:O|The Masters:O|Augusta National:G|Ryder Cup:O|Scottie Lindgren:P"
            "|Ellie Brandt:P",
        ),
        _sub(
            "icehockey_nhl",
            0.10,
            "power play|goaltender|slap shot|overtime winner|penalty box|hat trick|blue line"
            "|defenseman|Stanley Cup chase|face-off|shutout|empty-net goal",
            "Toronto Maple Leafs:O|Boston Bruins:O|Edmonton Oilers:O|NHL:O|Connor Blake:P"
            "|Mikko Laine:P",
        ),
    ),
    _cat(
        "finance",
        0.08,
        "beats|misses|raises|cuts|reports|warns about|slashes|boosts|acquires|tops|forecasts"
        "|downgrades",
        "quarterly|record|volatile|bullish|bearish|surprising|steady|sharp",
        "investors|earnings|stocks|economy|inflation|interest rates|profits|shareholders",
        _sub(
            "markets",
            0.30,
            "Dow Jones|stock rally|bond yields|sell-off|S&P 500|Nasdaq|market rally|oil prices"
            "|Treasury yields|trading session|bull market|futures",
            "Wall Street:G|Federal Reserve:O|Jerome Castillo:P|Goldman Sachs:O|Morgan Stanley:O"
            "|New York Stock Exchange:O",
        ),
        _sub(
            "finance-companies",
            0.30,
            "merger|CEO|layoffs|quarterly revenue|earnings call|acquisition|IPO|stock buyback"
            "|profit margin|supply chain|board of directors|dividend",
            "Amazon:O|Walmart:O|Boeing:O|General Electric:O|Target:O|CEO Rachel Lindholm:P|Tesla:O",
        ),
        _sub(
            "personalfinance",
            0.25,
            "retirement savings|401(k)|credit score|mortgage rate|budget|tax refund"
            "|Social Security|student loans|emergency fund|credit card debt|pension|paycheck",
            "IRS:O|Social Security Administration:O|Fidelity:O|Vanguard:O|Suze Carmichael:P",
        ),
        _sub(
            "finance-real-estate",
            0.15,
            "home prices|housing market|real estate agent|rent|mortgage|listing|home sales"
            "|down payment|condo|property taxes|first-time buyers|foreclosure",
            "Zillow:O|Redfin:O|National Association of Realtors:O|Fannie Mae:O|Phoenix:G|Austin:G",
        ),
    ),
    _cat(
        "lifestyle",
        0.09,
        "reveals|shares|shows off|celebrates|tries|transforms|loves|swears by|designs"
        "|announces|welcomes|spots",
        "stylish|cozy|adorable|viral|heartwarming|chic|surprising|royal",
        "style|home|family|weekend|secrets|tips|trend|photos",
        _sub(
            "lifestylebuzz",
            0.30,
            "viral video|internet trend|TikTok challenge|dating app|wedding proposal|tattoo"
            "|fashion week|red carpet look|makeover|influencer|selfie|dress code",
            "TikTok:O|Instagram:O|Kylie Moreno:P|Jenna Royce:P|Met Gala:O",
        ),
        _sub(
            "lifestyleroyals",
            0.20,
            "royal family|palace|coronation|duchess|prince|queen consort|royal wedding"
            "|crown jewels|state banquet|royal tour|tiara|line of succession",
            "Buckingham Palace:G|Prince Edmund:P|Duchess Amelia:P|King Frederick:P|Windsor:G"
            "|Kensington Palace:G",
        ),
        _sub(
            "lifestylehomeandgarden",
            0.30,
            "kitchen remodel|garden|backyard|living room|houseplants|closet|bathroom|decor"
            "|lawn|patio|spring cleaning|furniture",
            "IKEA:O|Home Depot:O|Joanna Haines:P|Martha Sterling:P|Lowe's:O",
        ),
        _sub(
            "lifestyleparenting",
            0.20,
            "toddler|newborn|parenting hack|baby name|teenager|bedtime routine|screen time"
            "|homeschool|grandparents|twins|daycare|school lunch",
            "Dr. Miriam Feld:P|American Academy of Pediatrics:O|Babylist:O|Nina Alvarado:P",
        ),
    ),
    _cat(
        "health",
        0.05,
        "may reduce|can boost|lowers|raises|improves|prevents|fights|triggers|eases|treats"
        "|helps|reverses",
        "healthy|chronic|daily|low-carb|early|simple|hidden|deadly",
        "doctors|patients|study|symptoms|risk|diet|sleep|heart",
        _sub(
            "medical",
            0.35,
            "cancer screening|heart disease|blood pressure|diabetes|flu season|hospital"
            "|vaccine|surgery|Alzheimer's|clinical trial|stroke|antibiotics",
            "Mayo Clinic:O|CDC:O|FDA:O|World Health Organization:O|Dr. Alan Whitcombe:P"
            "|Cleveland Clinic:O",
        ),
        _sub(
            "wellness",
            0.25,
            "meditation|stress relief|sleep habits|mental health|anxiety|gut health"
            "|mindfulness|burnout|morning routine|therapy|self-care|breathing exercise",
            "Headspace:O|Dr. Lena Kovač:P|Calm:O|Harvard Health:O",
        ),
        _sub(
            "weightloss",
            0.20,
            "calorie deficit|belly fat|intermittent fasting|weight loss journey|metabolism"
            "|keto diet|portion size|protein shake|waistline|cheat meal|pounds|body weight",
            "WeightWatchers:O|Ozempic:C|Coach Tasha Reid:P|Noom:O",
        ),
        _sub(
            "fitness",
            0.20,
            "workout|strength training|running|yoga|cardio|push-ups|marathon|treadmill|squats"
            "|gym|core exercise|stretching",
            "Peloton:O|Nike:O|CrossFit:O|Trainer Marcus Bell:P|Boston Marathon:O",
        ),
    ),
    _cat(
        "foodanddrink",
        0.05,
        "serves|bakes|grills|tastes|recalls|opens|launches|brings back|tops|ranks|cooks|adds",
        "delicious|crispy|easy|homemade|spicy|cheesy|seasonal|best",
        "recipe|menu|dinner|flavor|chef|ingredients|dessert|meal",
        _sub(
            "recipes",
            0.35,
            "casserole|slow cooker|sheet pan dinner|banana bread|chicken thighs|pasta salad"
            "|chocolate cake|soup|pie crust|air fryer|meatballs|sourdough",
            "Chef Ina Bellamy:P|Ree Dalton:P|Food Network:O|Bon Appétit:O",
        ),
        _sub(
            "foodnews",
            0.25,
            "food recall|grocery prices|fast food|snack|cereal|salmonella|food truck"
            "|frozen pizza|coffee|ice cream|candy|new flavor",
            "McDonald's:O|Starbucks:O|Costco:O|Trader Joe's:O|Taco Bell:O|USDA:O",
        ),
        _sub(
            "restaurantsandnews",
            0.25,
            "restaurant|steakhouse|brunch spot|diner|pizzeria|drive-thru|Michelin star"
            "|waitstaff|tasting menu|barbecue joint|food hall|tipping",
            "Olive Garden:O|Chipotle:O|Michelin Guide:O|Chef Marco Bellini:P|Nashville:G"
            "|New Orleans:G",
        ),
        _sub(
            "beverages",
            0.15,
            "wine|craft beer|cocktail|whiskey|brewery|espresso|margarita|bourbon|vineyard"
            "|champagne|smoothie|tea",
            "Napa Valley:G|Anheuser-Busch:O|Sommelier Claire Dubois:P|Kentucky:G",
        ),
    ),
    _cat(
        "travel",
        0.05,
        "visits|explores|reopens|bans|ranks|offers|cancels|reroutes|welcomes|discovers|books"
        "|upgrades",
        "scenic|hidden|affordable|luxury|remote|crowded|underrated|breathtaking",
        "trip|vacation|travelers|destination|tourists|getaway|itinerary|journey",
        _sub(
            "traveltripideas",
            0.35,
            "road trip|beach town|weekend getaway|small town|island|mountain village|cruise"
            "|lake house|ski resort|boardwalk|scenic drive|hiking trail",
            "Maui:G|Key West:G|Santa Fe:G|Aspen:G|Lonely Planet:O|Banff:G|Savannah:G",
        ),
        _sub(
            "travelnews",
            0.30,
            "flight delays|airport security|passport|airline|boarding pass|carry-on bag"
            "|TSA line|layover|jet lag|cruise ship|travel ban|lost luggage",
            "Delta Air Lines:O|United Airlines:O|TSA:O|Southwest Airlines:O|JFK Airport:G|FAA:O",
        ),
        _sub(
            "travelhotels",
            0.15,
            "hotel|resort|suite|room service|beach resort|boutique hotel|loyalty points"
            "|check-in|all-inclusive|spa|rooftop pool|bed and breakfast",
            "Marriott:O|Hilton:O|Airbnb:O|Four Seasons:O|Las Vegas:G",
        ),
        _sub(
            "travelnationalparks",
            0.20,
            "national park|campground|canyon|waterfall|geyser|park ranger|wildlife|trailhead"
            "|glacier|sunrise hike|camping|backcountry",
            "Yellowstone:G|Grand Canyon:G|Yosemite:G|Zion National Park:G|National Park Service:O",
        ),
    ),
    _cat(
        "autos",
        0.04,
        "recalls|unveils|reveals|tests|drives|launches|discontinues|upgrades|outsells"
        "|redesigns|reviews|ships",
        "electric|hybrid|powerful|affordable|rugged|luxury|fuel-efficient|redesigned",
        "car|truck|SUV|drivers|engine|dealership|model year|horsepower",
        _sub(
            "autosnews",
            0.35,
            "recall|auto sales|car prices|dealership|gas prices|car loan|auto tariffs"
            "|crash test|traffic safety|seat belt|airbag|auto plant",
            "Ford:O|General Motors:O|Toyota:O|Honda:O|NHTSA:O|Stellantis:O|Detroit:G",
        ),
        _sub(
            "autosreviews",
            0.25,
            "pickup truck|sedan|minivan|crossover|sports car|test drive|interior"
            "|towing capacity|infotainment|cargo space|ride quality|V8",
            "Ford F-150:C|Toyota Camry:C|Honda CR-V:C|Chevrolet Silverado:C|Car and Driver:O"
            "|Jeep Wrangler:C",
        ),
        _sub(
            "autoselectric",
            0.25,
            "electric vehicle|charging station|battery range|EV tax credit|fast charger"
            "|self-driving|autopilot|charging network|battery plant|range anxiety"
            "|plug-in hybrid|EV sales",
            "Tesla:O|Rivian:O|Lucid:O|Tesla Model Y:C|Elon Hartley:P",
        ),
        _sub(
            "autosclassics",
            0.15,
            "classic car|muscle car|vintage Corvette|restoration|car show|barn find|hot rod"
            "|auction block|collector car|convertible|Mustang|garage",
            "Barrett-Jackson:O|Jay Lennox:P|Pebble Beach:G|Chevrolet Corvette:C|Ford Mustang:C",
        ),
    ),
    _cat(
        "weather",
        0.03,
        "hits|slams|threatens|brings|sweeps through|batters|moves into|strengthens"
        "|knocks out|drenches|blankets|targets",
        "severe|record|freezing|dangerous|heavy|powerful|extreme|scorching",
        "forecast|temperatures|storm|rain|winds|meteorologists|weekend forecast|conditions",
        _sub(
            "weathertopstories",
            0.45,
            "heat wave|cold front|thunderstorms|heavy rain|snowfall|flash flood|wind chill"
            "|hail|fog|frost|dry spell|humidity",
            "National Weather Service:O|Meteorologist Jim Carver:P|Denver:G|Chicago:G"
            "|Minneapolis:G|Dallas:G",
        ),
        _sub(
            "weatherstorms",
            0.35,
            "hurricane|tornado|blizzard|tropical storm|storm surge|evacuation order"
            "|power outages|landfall|winter storm|ice storm|tornado warning|storm damage",
            "National Hurricane Center:O|Florida:G|Gulf Coast:G|Oklahoma:G|Texas:G|Louisiana:G",
        ),
        _sub(
            "weatherclimate",
            0.20,
            "drought|wildfire smoke|sea levels|climate change|melting ice|record heat"
            "|air quality|El Niño|carbon emissions|warming oceans|rainfall totals"
            "|wildfire season",
            "NOAA:O|California:G|Arizona:G|Climatologist Dr. Maya Lund:P",
        ),
    ),
    _cat(
        "entertainment",
        0.05,
        "reveals|slams|praises|debuts|responds to|opens up about|confirms|teases|celebrates"
        "|honors|shares|denies",
        "shocking|glamorous|emotional|candid|iconic|surprise|legendary|famous",
        "star|fans|Hollywood|interview|celebrity|red carpet|scandal|comeback",
        _sub(
            "celebrity",
            0.50,
            "divorce|engagement ring|baby bump|feud|mansion|birthday party|paparazzi|memoir"
            "|breakup|wedding|net worth|social media post",
            "Chloe Vance:P|Brad Kessler:P|Selena Marquez:P|Tom Harlow:P|People Magazine:O"
            "|Beverly Hills:G",
        ),
        _sub(
            "awards",
            0.30,
            "Oscars|Golden Globes|Grammys|acceptance speech|nomination|halftime show"
            "|award show|best actress|host|trophy|Emmys|after-party",
            "Academy Awards:O|Recording Academy:O|Dolby Theatre:G|Jimmy Kellan:P|Beyoncé Laurent:P",
        ),
        _sub(
            "books",
            0.20,
            "novel|bestseller|book club|memoir|author|thriller|book tour|book deal"
            "|literary prize|audiobook|debut novel|bookstore",
            "Oprah's Book Club:O|Penguin Random House:O|Author Colleen Hart:P"
            "|Barnes & Noble:O|New York Times bestseller list:C",
        ),
    ),
    _cat(
        "music",
        0.03,
        "releases|drops|cancels|announces|performs|tops|covers|headlines|postpones|debuts"
        "|teases|sells out",
        "new|surprise|sold-out|chart-topping|acoustic|live|final|debut",
        "singer|album|song|band|concert|tour|fans|music video",
        _sub(
            "musicnews",
            0.40,
            "Billboard chart|record label|songwriter|streaming numbers|music video|single"
            "|hit song|duet|lyrics|rapper|country star|pop star",
            "Billboard:O|Spotify:O|Taylor Brooks:P|Drake Mills:P|Luna Vega:P|Grammy Awards:O",
        ),
        _sub(
            "musicconcerts",
            0.35,
            "world tour|stadium show|music festival|setlist|encore|ticket prices|opening act"
            "|reunion tour|residency|arena|livestream concert|backstage",
            "Coachella:O|Madison Square Garden:G|Ticketmaster:O|Nashville:G|Red Rocks:G"
            "|Glastonbury:O",
        ),
        _sub(
            "musicalbums",
            0.25,
            "studio album|vinyl|debut album|tracklist|deluxe edition|mixtape|record|producer"
            "|EP|remix|B-side|anniversary edition",
            "Abbey Road Studios:G|Rolling Stone:O|Atlantic Records:O|The Velvet Foxes:O",
        ),
    ),
    _cat(
        "movies",
        0.03,
        "tops|earns|casts|delays|premieres|stuns|directs|reboots|wraps|snags|leads|dominates",
        "blockbuster|animated|long-awaited|chilling|epic|indie|sequel|critically acclaimed",
        "film|movie|director|box office|trailer|cast|sequel|franchise",
        _sub(
            "movienews",
            0.40,
            "casting news|film shoot|production|movie studio|remake|spinoff|release date"
            "|director's cut|superhero film|horror movie|theater chain|screenplay",
            "Marvel Studios:O|Warner Bros.:O|Universal Pictures:O|Director Nina Castellano:P"
            "|Actor Jake Morrow:P|Hollywood:G",
        ),
        _sub(
            "moviereviews",
            0.30,
            "plot twist|performance|cinematography|soundtrack|running time|climax|villain"
            "|storyline|ending|lead role|special effects|script",
            "Rotten Tomatoes:O|Critic Dana Levitt:P|Sundance Film Festival:O|Cannes:G",
        ),
        _sub(
            "boxoffice",
            0.30,
            "opening weekend|ticket sales|box office haul|global gross|theaters|premiere"
            "|blockbuster season|domestic debut|IMAX screens|holdover|sleeper hit"
            "|summer box office",
            "Disney:O|Paramount:O|AMC Theatres:O|Lionsgate:O|Pixar:O",
        ),
    ),
    _cat(
        "tv",
        0.04,
        "renews|cancels|casts|premieres|wraps|returns to|airs|revives|spoils|teases|streams|hosts",
        "hit|new|final|binge-worthy|streaming|reality|late-night|beloved",
        "show|series|season finale|episode|network|viewers|showrunner|cast",
        _sub(
            "tvnews",
            0.40,
            "sitcom|drama series|TV ratings|spinoff series|talk show|late-night host"
            "|network schedule|pilot|reboot|anchor|primetime|miniseries",
            "NBC:O|CBS:O|ABC:O|Fox:O|Host Gina Maddox:P|Actor Rob Kendrick:P",
        ),
        _sub(
            "tvreality",
            0.30,
            "reality show|contestant|elimination|rose ceremony|reunion special|judges"
            "|audition|dance competition|cooking competition|finale twist|villain edit|voting",
            "The Bachelor:C|Survivor:C|American Idol:C|The Voice:C|Dancing with the Stars:C",
        ),
        _sub(
            "tvstreaming",
            0.30,
            "streaming service|subscription price|binge watch|docuseries|new season"
            "|streaming charts|limited series|password sharing|original series|watchlist"
            "|trailer drop|series premiere",
            "Netflix:O|Hulu:O|HBO Max:O|Disney+:O|Prime Video:O|Apple TV+:O",
        ),
    ),
    _cat(
        "video",
        0.04,
        "captures|shows|films|rescues|surprises|catches|records|goes viral after|chases"
        "|saves|spots|stuns",
        "hilarious|amazing|adorable|incredible|unbelievable|heartwarming|wild|terrifying",
        "video|clip|footage|camera|viewers|moment|reaction|livestream",
        _sub(
            "viral",
            0.40,
            "dashcam footage|doorbell camera|prank|dance routine|flash mob|fail compilation"
            "|surprise reunion|wedding video|marriage proposal|street performer|drone footage"
            "|time-lapse",
            "YouTube:O|TikTok:O|Reddit:O|Creator Jay Dunn:P",
        ),
        _sub(
            "animals",
            0.35,
            "golden retriever|rescue dog|kitten|baby elephant|bear|dolphin|shelter pet|owl"
            "|puppy|zoo|wildlife rescue|penguin",
            "San Diego Zoo:O|ASPCA:O|Humane Society:O|Yellowstone:G|Zookeeper Amy Tran:P",
        ),
        _sub(
            "videohowto",
            0.25,
            "step-by-step guide|life hack|tutorial|DIY project|cleaning trick|home repair"
            "|gadget|kitchen hack|organizing tip|quick fix|craft|power tool",
            "Bob Vila:P|This Old House:C|Handyman Rick Torres:P",
        ),
    ),
    _cat(
        "kids",
        0.02,
        "learns|builds|discovers|draws|plays|creates|reads|explores|solves|invents|wins|celebrates",
        "fun|colorful|educational|creative|silly|kid-friendly|curious|young",
        "kids|children|students|activity|family fun|classroom|teacher|game",
        _sub(
            "kidsactivities",
            0.40,
            "craft project|coloring page|science experiment|board game|puzzle|summer camp"
            "|scavenger hunt|playground|Lego set|slime|birthday games|treasure hunt",
            "Lego:O|Crayola:O|Hasbro:O|Camp Director Ben Ortiz:P",
        ),
        _sub(
            "kidslearning",
            0.35,
            "spelling bee|math problem|reading list|science fair|homework|dinosaur facts"
            "|solar system|alphabet|geography quiz|field trip|library card|history lesson",
            "PBS Kids:O|Sesame Workshop:O|National Geographic Kids:O|Teacher Molly Brennan:P",
        ),
        _sub(
            "kidsstories",
            0.25,
            "bedtime story|fairy tale|picture book|cartoon|animated series|superhero|dragon"
            "|puppet show|storytime|comic book|talking animals|magic kingdom",
            "Nickelodeon:O|Disney Junior:O|Cartoon Network:O|Dr. Seuss:P|Peppa Pig:C",
        ),
    ),
)

# Words every topic uses, so that topic is carried by the topical words and not by the frame.
PLACES: tuple[Entity, ...] = _entities(
    "New York:G|Los Angeles:G|Chicago:G|Houston:G|Phoenix:G|Philadelphia:G|San Antonio:G"
    "|San Diego:G|Seattle:G|Miami:G|Atlanta:G|Boston:G|Denver:G|Portland:G|Detroit:G"
    "|Nashville:G|Ohio:G|Michigan:G|Georgia:G|Virginia:G|Colorado:G|Oregon:G|Montréal:G"
    "|São Paulo:G|Toronto:G|London:G"
)
TIME_PHRASES = _words(
    "this week|on Monday|on Tuesday|on Wednesday|on Thursday|on Friday|this weekend|today"
    "|this year|for the first time|in years|again|so far|right now|next month|tonight"
)
TAILS = _words(
    "report says|here's what we know|officials say|sources say|what to know|and why it matters"
    "|experts say|according to a new report|you need to see|explained|and more|in photos"
)
SOURCES = _words(
    "the Associated Press|local reports|a new survey|a statement released Monday|court documents"
    "|a spokesperson|people familiar with the matter|the company|a press release|an interview"
)
CLOSERS = _words(
    "Here is what happened next and what comes after|More details are expected later this week"
    "|The full story is still developing and updates will follow"
    "|Readers shared mixed reactions online|It is the latest chapter in a story that has drawn "
    "wide attention|Many people are watching closely to see what happens next"
    "|The news surprised many observers who had expected a quieter week"
)

# Headline templates: {E}/{E2} entity, {N}/{N2} noun, {V}/{V2} verb, {A} adjective, {P} place,
# {T} time phrase, {G} tail, {num} a small number.
TITLE_TEMPLATES = (
    "{E} {V} {A} {N} {T}",
    "{E} {V} the {N} as {N2} takes center stage in {P}",
    "Why the {A} {N} matters for {E} {T}",
    "{num} things to know about the {N} in {P}",
    "{E} and {E2} {V} over {N}, {G}",
    "How {E} {V} the {N} after a {A} {N2}",
    "{P}: {E} {V} {A} {N} ahead of the {N2}",
    "What the {N} means for {E} and the {N2}",
    "The {A} {N} that {V} {E} {T}",
    "{E} {V} {N} in {P}, {G}",
    "Inside the {N}: how {E} {V} the {A} {N2}",
    "{E} says the {A} {N} is the story of the {N2}",
    "{num} {A} {N} moments {T}, ranked",
    "{E} {V} {N} and {N2} {T}",
)
# Abstract sentences use the same slots plus {S} a source.
ABSTRACT_TEMPLATES = (
    "{E} {V} the {A} {N} {T}, according to {S}.",
    "The {N} in {P} drew attention after {E} {V} the {N2}.",
    "Here is what {E} said about the {N} and why the {N2} could change things {T}.",
    "{E} {V} {A} {N} as the {N2} continues to draw crowds in {P}, {S} said.",
    "Fans and experts weigh in on the {N}, the {A} {N2} and what {E} does next.",
    "After a {A} stretch, {E} {V} the {N} and points to the {N2} as the next test.",
    "The {A} {N} is back in focus {T}, with {E} at the center of the {N2}.",
)
