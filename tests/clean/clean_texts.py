"""Hand-written documents for the clean tests: prose that passes the quality rules, in three languages."""

RIVER = """The river that runs through the old town has shaped the lives of its people for centuries. \
Farmers relied on its floods to bring fresh soil to their fields, and merchants used its slow current \
to carry grain, wool and timber down to the coast. In the spring the water rises quickly, and the \
families who live near the banks have learned to read the colour of the water as a warning.

Today the river is calmer, because a dam built upstream in the last century controls the flow. \
Children swim in the shallow pools during the summer, and fishermen return each evening with trout \
that they sell at the market in the square. The town council has planted trees along the paths so \
that visitors can walk from the bridge to the mill in the shade.

Historians say that the first bridge was made of wood and was washed away several times before the \
stone arches that stand today were finished. The names of the masons are still carved into the \
parapet, and every year the school takes its pupils to read them and to learn how the work was done."""

BREAD = """Baking bread at home is easier than most people think, and it needs only flour, water, salt and \
a little yeast. The secret is time: a dough that is allowed to rise slowly in a cool kitchen develops \
a deeper flavour than one that is rushed in a warm oven. Many bakers mix the dough in the evening \
and leave it covered overnight, so that it is ready to shape in the morning.

When the loaf goes into the oven, a tray of water on the lowest shelf keeps the air moist and helps \
the crust to become thin and crisp. After forty minutes the bread should sound hollow when it is \
tapped underneath. It is tempting to cut it at once, but the crumb is still setting, and it is better \
to wait until the loaf has cooled on a rack for at least an hour."""

KOREAN = """서울은 대한민국의 수도이며 천만 명에 가까운 사람들이 살고 있는 큰 도시입니다. 한강이 도시의 \
가운데를 가로질러 흐르고 있으며 강을 따라 넓은 공원과 자전거 길이 이어져 있습니다. 주말이 되면 많은 \
가족들이 공원에 나와 산책을 하거나 돗자리를 펴고 음식을 나누어 먹습니다. 도시의 북쪽에는 오래된 궁궐과 \
한옥 마을이 남아 있어서 외국인 관광객들이 전통 문화를 경험하기 위해 자주 찾아옵니다. 남쪽에는 높은 \
건물과 회사들이 모여 있고 지하철이 도시 구석구석을 빠르게 연결해 줍니다. 봄에는 벚꽃이 피고 가을에는 \
단풍이 들어서 계절마다 다른 풍경을 즐길 수 있습니다. 서울 사람들은 바쁘게 살아가지만 저녁에는 친구들과 \
함께 시장에서 따뜻한 음식을 먹으며 하루의 피로를 풉니다."""

RUSSIAN = """Москва стоит на берегах реки, которая дала городу своё имя. Летом по реке ходят небольшие \
теплоходы, и с их палуб можно увидеть старые монастыри, широкие набережные и зелёные парки. Зимой \
река замерзает не всегда, но в морозные дни люди выходят гулять вдоль воды и смотрят, как над ней \
поднимается пар. В центре города сохранились узкие улицы с невысокими домами, в которых когда-то \
жили купцы и ремесленники. Сегодня там открыты музеи, книжные магазины и маленькие кафе, где можно \
выпить горячего чая после долгой прогулки. Жители любят свой город за его историю и за то, что в нём \
всегда происходит что-то новое."""

FRENCH = """La ville de Lyon se trouve au confluent du Rhône et de la Saône, et elle est connue depuis \
longtemps pour sa cuisine et pour ses soieries. Les traboules, ces passages qui traversent les \
immeubles du vieux quartier, permettaient autrefois aux ouvriers de transporter les tissus à l'abri \
de la pluie. Aujourd'hui, les visiteurs les parcourent pour découvrir des cours cachées et des \
escaliers anciens. Le soir, les habitants se retrouvent dans les bouchons, de petits restaurants où \
l'on sert des plats simples et généreux, accompagnés d'un verre de vin de la région."""


def page(title: str, body_html: str, charset_meta: str = "utf-8") -> str:
    """A realistic page: navigation, menu, cookie banner, sidebar and footer around an article."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="{charset_meta}"><title>{title}</title></head>
<body>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience. Accept all cookies</div>
<header><nav class="main-nav"><ul><li><a href="/">Home</a></li><li><a href="/news">News Menu</a></li>
<li><a href="/shop">Shop Menu</a></li><li><a href="/contact">Contact Menu</a></li></ul></nav></header>
<div class="breadcrumbs"><a href="/">Home</a> &gt; <a href="/stories">Stories</a></div>
<main><article><h1>{title}</h1>
{body_html}
</article></main>
<aside class="sidebar"><h3>Popular posts</h3><ul><li><a href="/a">Ten tips for gardeners</a></li>
<li><a href="/b">Our favourite recipes</a></li></ul></aside>
<footer><p>Copyright 2024 Example Media. All rights reserved.</p><a href="/privacy">Privacy policy</a>
<a href="/terms">Terms of use</a></footer>
</body></html>"""


def paragraphs_html(text: str) -> str:
    return "\n".join(f"<p>{p.strip()}</p>" for p in text.split("\n\n"))
